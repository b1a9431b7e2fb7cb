"""Dispatch's settings refuse a takeover that one late heartbeat could trigger, and an
uncertain-send policy for a channel kind that does not exist."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.dispatch.settings import DispatchSettings


def test_takeover_must_span_three_heartbeats() -> None:
    with pytest.raises(ValidationError, match="CLOSELOOP_DISPATCH_TAKEOVER_SECONDS"):
        DispatchSettings(dispatch_heartbeat_seconds=2.0, dispatch_takeover_seconds=5.0)


def test_uncertain_send_policy_names_a_channel_kind() -> None:
    with pytest.raises(ValidationError, match="fax"):
        DispatchSettings(dispatch_uncertain_sends={"fax": "give_up"})


def test_uncertain_send_policy_is_resend_or_give_up() -> None:
    with pytest.raises(ValidationError, match="dispatch_uncertain_sends"):
        DispatchSettings(dispatch_uncertain_sends={"sms": "maybe"})


def test_uncertain_sends_are_resent_unless_a_kind_says_otherwise() -> None:
    settings = DispatchSettings(dispatch_uncertain_sends={"sms": "give_up"})
    assert settings.dispatch_uncertain_sends == {"sms": "give_up"}
    assert DispatchSettings().dispatch_uncertain_sends == {}

"""The events dispatch takes: rendered messages, merges and erasures, never `profile.updated`;
and the zone a message names kept on its ledger row."""

from __future__ import annotations

from libs.common.events import (
    JourneyRef,
    MessageRendered,
    ProfileDeleted,
    ProfileMerged,
    ProfileUpdated,
)
from services.dispatch.handlers import ACCEPTED_TYPES, _ledger_row


def test_dispatch_takes_messages_merges_and_erasures_but_not_profile_updates() -> None:
    assert ProfileUpdated.event_type not in ACCEPTED_TYPES
    assert {
        MessageRendered.event_type,
        ProfileMerged.event_type,
        ProfileDeleted.event_type,
    } == ACCEPTED_TYPES


def test_the_ledger_row_keeps_the_zone_the_message_names() -> None:
    message = MessageRendered(
        request_id="req_1",
        profile_id="prf_1",
        channel="email",
        template_id="tpl_1",
        template_version=1,
        recipient="li@example.com",
        idempotency_key="key_1",
        journey=JourneyRef(journey_id="jrn_1", journey_version=1, node_id="node_1"),
        time_zone="Asia/Tokyo",
    )
    assert _ledger_row("evt_1", message)["time_zone"] == "Asia/Tokyo"
    assert _ledger_row("evt_2", message.model_copy(update={"time_zone": None}))["time_zone"] is None

"""Send decisions: consent, unsubscribes, caps over rolling windows, quiet hours by time zone."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from libs.common.contact_policy import (
    Cap,
    Decision,
    InvalidPolicy,
    Preferences,
    QuietHours,
    SendPolicy,
    check_caps_kept,
    decide,
    merged_preferences,
    parse_policy,
    profile_zone,
    quiet_hours_end,
)

NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
UTC_ZONE = ZoneInfo("UTC")


def _decide(channel: str = "email", **kwargs: Any) -> Decision:
    values: dict[str, Any] = {
        "preferences": Preferences(),
        "policy": SendPolicy(),
        "sent": [],
        "zone": UTC_ZONE,
        "default_consent": True,
    }
    values.update(kwargs)
    return decide(channel, NOW, **values)


def test_unsubscribed_channel_is_suppressed_even_with_consent() -> None:
    prefs = Preferences({"email": True}, frozenset({"email"}))
    decision = _decide(preferences=prefs)
    assert (decision.action, decision.reason) == ("suppress", "unsubscribed")


def test_consent_refused_suppresses_and_other_channels_follow_the_default() -> None:
    prefs = Preferences({"sms": False})
    assert _decide("sms", preferences=prefs).reason == "consent"
    assert _decide("email", preferences=prefs).action == "send"
    assert _decide("email", default_consent=False).reason == "consent"
    opted_in = Preferences({"email": True})
    assert _decide(preferences=opted_in, default_consent=False).action == "send"


def test_channel_cap_counts_only_that_channel_within_the_rolling_window() -> None:
    policy = SendPolicy(caps=(Cap("email", 2, timedelta(days=1)),))
    recent = [("email", NOW - timedelta(hours=1)), ("email", NOW - timedelta(hours=23))]
    assert _decide(policy=policy, sent=recent).reason == "frequency_cap"
    aged = [("email", NOW - timedelta(hours=1)), ("email", NOW - timedelta(hours=25))]
    assert _decide(policy=policy, sent=aged).action == "send"
    others = [("sms", NOW - timedelta(hours=1))] * 5
    assert _decide(policy=policy, sent=others).action == "send"


def test_overall_cap_counts_every_channel() -> None:
    policy = SendPolicy(caps=(Cap("*", 3, timedelta(days=7)),))
    sent = [("sms", NOW - timedelta(days=1)), ("push", NOW - timedelta(days=2))]
    assert _decide(policy=policy, sent=sent).action == "send"
    sent.append(("email", NOW - timedelta(days=6)))
    assert _decide("webhook", policy=policy, sent=sent).reason == "frequency_cap"


def test_quiet_hours_across_midnight_in_the_profiles_zone() -> None:
    quiet = QuietHours(time(21), time(8))
    shanghai = ZoneInfo("Asia/Shanghai")  # 12:00 UTC is 20:00 there, 21:00 UTC is 05:00
    assert quiet_hours_end(quiet, NOW, shanghai) is None
    evening = NOW + timedelta(hours=1, minutes=30)  # 21:30 local
    assert quiet_hours_end(quiet, evening, shanghai) == datetime(2025, 3, 15, 0, 0, tzinfo=UTC)
    early = NOW + timedelta(hours=9)  # 05:00 local on the 15th
    assert quiet_hours_end(quiet, early, shanghai) == datetime(2025, 3, 15, 0, 0, tzinfo=UTC)
    assert quiet_hours_end(quiet, NOW + timedelta(hours=12), shanghai) is None  # 08:00 local


def test_quiet_hours_within_one_day_and_across_a_dst_change() -> None:
    quiet = QuietHours(time(1), time(4))
    new_york = ZoneInfo("America/New_York")
    # 2025-03-09: clocks jump from 02:00 to 03:00; 06:30 UTC is 01:30 EST.
    at = datetime(2025, 3, 9, 6, 30, tzinfo=UTC)
    assert quiet_hours_end(quiet, at, new_york) == datetime(2025, 3, 9, 8, 0, tzinfo=UTC)
    assert quiet_hours_end(quiet, datetime(2025, 3, 9, 9, 0, tzinfo=UTC), new_york) is None


def test_quiet_hours_defer_before_caps_and_only_for_their_channels() -> None:
    policy = SendPolicy(
        caps=(Cap("sms", 0, timedelta(days=1)),),
        quiet_hours=QuietHours(time(11), time(13), frozenset({"sms"})),
    )
    decision = _decide("sms", policy=policy)
    assert decision.action == "defer"
    assert decision.until == datetime(2025, 3, 14, 13, 0, tzinfo=UTC)
    assert _decide("email", policy=policy).action == "send"


def test_unknown_or_missing_zone_is_utc() -> None:
    assert profile_zone(None) == UTC_ZONE
    assert profile_zone("Mars/Olympus") == UTC_ZONE
    assert profile_zone("../../etc/passwd") == UTC_ZONE
    assert profile_zone("Europe/Paris") == ZoneInfo("Europe/Paris")


def test_policy_document_parses_and_names_what_is_wrong() -> None:
    policy = parse_policy(
        {
            "caps": [
                {"channel": "email", "max": 3, "window": "P1D"},
                {"channel": "*", "max": 5, "window": "P7D"},
            ],
            "quiet_hours": {"start": "21:00", "end": "08:00"},
        }
    )
    assert policy.caps[1] == Cap("*", 5, timedelta(days=7))
    assert policy.quiet_hours == QuietHours(time(21), time(8))
    bad = [
        ({"caps": [{"channel": "email", "max": 3, "window": "1 day"}]}, "caps[0].window"),
        ({"caps": [{"channel": "Email", "max": 3, "window": "P1D"}]}, "caps[0].channel"),
        ({"caps": [{"channel": "email", "max": -1, "window": "P1D"}]}, "caps[0].max"),
        ({"caps": [{"channel": "email", "max": 1, "window": "P999D"}]}, "caps[0].window"),
        ({"quiet_hours": {"start": "25:00", "end": "08:00"}}, "quiet_hours.start"),
        ({"quiet_hours": {"start": "08:00", "end": "08:00"}}, "quiet_hours.end"),
        ({"extra": 1}, "extra"),
    ]
    for document, path in bad:
        with pytest.raises(InvalidPolicy) as error:
            parse_policy(document)
        assert error.value.path == path


def test_merged_preferences_keep_the_survivors_answers_and_every_unsubscribe() -> None:
    survivor = Preferences({"email": True})
    merged = [Preferences({"email": False, "sms": True}, frozenset({"push"}))]
    result = merged_preferences(survivor, merged)
    assert result.consent == {"email": True, "sms": True}
    assert result.unsubscribed == frozenset({"push"})


def test_a_cap_window_longer_than_the_ledger_keeps_sends_is_refused_by_path() -> None:
    policy = parse_policy(
        {
            "caps": [
                {"channel": "email", "max": 3, "window": "P7D"},
                {"channel": "*", "max": 10, "window": "P60D"},
            ]
        }
    )
    with pytest.raises(InvalidPolicy) as refused:
        check_caps_kept(policy, timedelta(days=30))
    assert refused.value.path == "caps[1].window"
    check_caps_kept(policy, timedelta(days=60))

"""UTM tags to channels, the behaviours that are campaign touches, and visits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.attribution.campaigns import (
    CampaignTouch,
    campaign_channel,
    campaign_touch,
    visits,
)

AT = datetime(2025, 3, 14, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("source", "medium", "channel"),
    [
        ("google", "cpc", "paid_search"),
        ("Bing", " PPC ", "paid_search"),
        ("baidu", "paid", "paid_search"),
        ("facebook", "cpc", "paid_social"),
        ("partner", "paid_social", "paid_social"),
        ("facebook", "social", "social"),
        ("weibo", None, "social"),
        ("instagram", "story", "social"),
        ("newsletter_partner", "email", "email"),
        ("adnet", "display", "display"),
        ("adnet", "cpm", "display"),
        ("blog", "referral", "referral"),
        ("google", "organic", "organic"),
        ("partner", "affiliate", "affiliate"),
        ("print", "qr", "other_campaign"),
        (None, "unknown", "other_campaign"),
        ("closeloop", "email", None),
        (" CloseLoop ", "push", None),
    ],
)
def test_utm_tags_map_to_a_channel(source: str | None, medium: str | None, channel: str) -> None:
    assert campaign_channel(source, medium) == channel


def test_a_behaviour_with_utm_tags_is_a_touch_with_its_tags() -> None:
    context: dict[str, Any] = {
        "campaign": {"name": "spring", "source": "google", "medium": "cpc", "term": "tea"}
    }
    touch = campaign_touch("ajs-1", "prf_1", AT, context)
    assert touch == CampaignTouch("ajs-1", "prf_1", AT, "paid_search", "google", "cpc", "spring")


@pytest.mark.parametrize(
    "context",
    [
        {},
        {"campaign": "spring"},
        {"campaign": {"name": "spring"}},
        {"campaign": {"source": " ", "medium": 7}},
        {"campaign": {"source": "closeloop", "medium": "email"}},
    ],
)
def test_behaviours_without_a_source_or_medium_or_from_closeloop_are_no_touch(
    context: dict[str, Any],
) -> None:
    assert campaign_touch("ajs-1", "prf_1", AT, context) is None


def call(
    behaviour_id: str, minutes: float, name: str = "spring", profile: str = "prf_1"
) -> CampaignTouch:
    return CampaignTouch(
        behaviour_id, profile, AT + timedelta(minutes=minutes), "paid_search", "google", "cpc", name
    )


def test_calls_of_one_campaign_in_a_session_are_one_visit_at_the_first() -> None:
    calls = [call("c", 25), call("a", 0), call("b", 10), call("d", 54), call("e", 90)]
    # 0, 10, 25, 54 are each under 30 minutes after the previous call; 90 is a new visit.
    assert [t.behaviour_id for t in visits(calls)] == ["a", "e"]


def test_another_campaign_or_person_is_another_visit() -> None:
    calls = [call("a", 0), call("b", 5, name="summer"), call("c", 6, profile="prf_2")]
    assert [t.behaviour_id for t in visits(calls)] == ["a", "b", "c"]

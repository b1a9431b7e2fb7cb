"""Journey's copy of a profile: which channels it has an address for, and its time zone."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest

from libs.common.profiles import ProfileFacts
from services.journey.profiles import zone_named


@pytest.mark.parametrize(
    ("channel", "traits", "reachable"),
    [
        ("email", {"email": "li@example.com"}, True),
        ("email", {}, False),
        ("email", {"email": "   "}, False),
        ("email", {"email": "x" * 2049}, False),
        ("sms", {"phone": 8613800138000}, True),
        ("sms", {"phone": True}, False),
        ("push", {"push_token": "tok"}, True),
        ("push", {"email": "li@example.com"}, False),
        ("wechat", {"wechat_openid": "o6_bmjrPTlm6"}, True),
        ("webhook", {}, True),
    ],
)
def test_a_channel_is_reachable_with_an_address_in_its_trait(
    channel: str, traits: dict[str, Any], reachable: bool
) -> None:
    assert ProfileFacts("prf_1", traits=traits).can_reach(channel) is reachable


def test_an_unknown_or_missing_zone_is_utc() -> None:
    assert zone_named("Asia/Kolkata") == ZoneInfo("Asia/Kolkata")
    assert zone_named("Mars/Olympus") == ZoneInfo("UTC")
    assert zone_named(None) == ZoneInfo("UTC")

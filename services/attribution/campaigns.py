"""Campaign visits: behaviours carrying Segment's `context.campaign` (UTM tags) as touchpoints.

A visit from a paid search ad or a social post is a touch like a message, so those channels
compete with Closeloop's own for credit in the credit reports. Pure functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

CAMPAIGN_VISIT = "campaign.visit"
"""The outcome a campaign visit stands as among the message outcomes of a path."""

VISIT_GAP = timedelta(minutes=30)
"""Calls of one campaign closer together than this are one visit (the usual web session)."""

OWN_SOURCE = "closeloop"
"""`utm_source` of links in Closeloop's own messages: their click is already the touch."""

SOCIAL_SOURCES = frozenset(
    {
        "douyin",
        "facebook",
        "fb",
        "instagram",
        "linkedin",
        "pinterest",
        "reddit",
        "snapchat",
        "tiktok",
        "twitter",
        "wechat",
        "weibo",
        "x",
        "xiaohongshu",
        "youtube",
    }
)
PAID_MEDIUMS = frozenset({"cpc", "ppc", "paid", "paidsearch", "paid_search", "sem", "cpv"})
# Mediums that name their channel outright, after the paid ones.
MEDIUM_CHANNELS: Mapping[str, str] = {
    "display": "display",
    "banner": "display",
    "cpm": "display",
    "social": "social",
    "social_media": "social",
    "social-media": "social",
    "sm": "social",
    "email": "email",
    "e-mail": "email",
    "newsletter": "email",
    "sms": "sms",
    "push": "push",
    "affiliate": "affiliate",
    "referral": "referral",
    "organic": "organic",
}
OTHER_CAMPAIGN = "other_campaign"


@dataclass(frozen=True)
class CampaignTouch:
    """One behaviour that arrived with UTM tags, and the channel they map to."""

    behaviour_id: str
    profile_id: str
    occurred_at: datetime
    channel: str
    source: str | None
    medium: str | None
    name: str | None


def campaign_channel(source: str | None, medium: str | None) -> str | None:
    """The channel a `utm_source` / `utm_medium` pair maps to; None for Closeloop's own links.

    In order: a paid medium is `paid_social` from a social network and `paid_search` otherwise;
    a medium in MEDIUM_CHANNELS names its channel; an untagged medium from a social network is
    `social`; anything else is `other_campaign`. Case and surrounding spaces do not matter.
    """
    source, medium = _tag(source), _tag(medium)
    if source == OWN_SOURCE:
        return None
    social = source in SOCIAL_SOURCES
    if medium is not None and (medium in PAID_MEDIUMS or medium.startswith("paid")):
        return "paid_social" if social or "social" in medium else "paid_search"
    if medium is not None and medium in MEDIUM_CHANNELS:
        return MEDIUM_CHANNELS[medium]
    return "social" if social else OTHER_CAMPAIGN


def campaign_touch(
    behaviour_id: str, profile_id: str, occurred_at: datetime, context: Mapping[str, Any]
) -> CampaignTouch | None:
    """The touch a behaviour's `context.campaign` makes, if it has a source or a medium."""
    campaign = context.get("campaign")
    if not isinstance(campaign, Mapping):
        return None
    source, medium = _text(campaign.get("source")), _text(campaign.get("medium"))
    if source is None and medium is None:
        return None
    channel = campaign_channel(source, medium)
    if channel is None:
        return None
    return CampaignTouch(
        behaviour_id,
        profile_id,
        occurred_at,
        channel,
        source,
        medium,
        _text(campaign.get("name")),
    )


def visits(touches: Iterable[CampaignTouch]) -> list[CampaignTouch]:
    """One touch per visit: a profile's call with the same tags as its previous campaign call,
    less than VISIT_GAP after it, continues that visit. Each visit is its first call."""
    found: list[CampaignTouch] = []
    previous: dict[str, CampaignTouch] = {}
    for touch in sorted(touches, key=lambda t: (t.profile_id, t.occurred_at, t.behaviour_id)):
        last = previous.get(touch.profile_id)
        if (
            last is None
            or _tags(last) != _tags(touch)
            or touch.occurred_at - last.occurred_at >= VISIT_GAP
        ):
            found.append(touch)
        previous[touch.profile_id] = touch
    return found


def _tags(touch: CampaignTouch) -> tuple[str | None, ...]:
    return (_tag(touch.source), _tag(touch.medium), _tag(touch.name))


def _tag(value: str | None) -> str | None:
    """A tag as compared: trimmed, lower case, None when empty."""
    if value is None:
        return None
    return value.strip().lower() or None


def _text(value: Any) -> str | None:
    return value[:255] if isinstance(value, str) and value.strip() else None

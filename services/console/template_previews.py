"""What the template editor shows beside the sources, pure: whose facts a preview is rendered
for, an SMS's length as a carrier counts it, and the bandit's split as bars."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Final

from libs.common.errors import ApiError

_PROFILE_ID: Final = re.compile(r"^prf_[0-9A-Za-z_-]{1,124}$")
_MAX_WHO: Final = 512

# GSM 03.38: the default alphabet (one septet each) and its extension table (two: escape, char).
_GSM_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION: Final = frozenset("^{}\\[~]|€\f")
# Characters per message: alone, and per part of a concatenated message (its header takes room).
_SINGLE: Final = {"GSM-7": 160, "UCS-2": 70}
_PART: Final = {"GSM-7": 153, "UCS-2": 67}


@dataclass(frozen=True)
class ProfileQuery:
    """How to find the person a preview is for: by profile id, or by one identifier."""

    profile_id: str | None = None
    identifier: str | None = None


def profile_query(who: str) -> ProfileQuery:
    """`prf_…` is a profile id; `type:value` an identifier as given (`user_id:u1`); text with
    an `@` an email; anything else a user id."""
    who = who.strip()
    if not who:
        raise ApiError(422, "invalid_request", "profile: give a profile id or an email", "profile")
    if len(who) > _MAX_WHO or "\x00" in who:
        raise ApiError(422, "invalid_request", "profile: not an id or an email", "profile")
    if _PROFILE_ID.match(who):
        return ProfileQuery(profile_id=who)
    if ":" in who:
        return ProfileQuery(identifier=who)
    if "@" in who:
        return ProfileQuery(identifier=f"email:{who}")
    return ProfileQuery(identifier=f"user_id:{who}")


def facts_of(profile: dict[str, Any]) -> dict[str, Any]:
    """The facts a request carries about the person (`profile` of `message.requested`), from
    the profile service's view of them: traits, tags, lifecycle stage, scores, top category.

    The scores are those the profile service announces in `profile.updated`: the RFM score,
    the predictive scores, and the engagement counts and credits.
    """
    scores: dict[str, Any] = {}
    rfm = profile.get("scores")
    if rfm:
        scores["rfm"] = rfm["rfm"]
    predicted = (profile.get("predictions") or {}).get("scores") or {}
    for name, value in predicted.items():
        if name not in ("scored_at", "fit_id", "churn_horizon_days"):
            scores[name] = value
    engagement = profile.get("engagement") or {}
    for channel, outcomes in (engagement.get("by_channel") or {}).items():
        for outcome, count in outcomes.items():
            scores[f"{channel}_{outcome}"] = count
    if engagement.get("last_engaged_at"):
        scores["last_engaged_at"] = engagement["last_engaged_at"]
    if engagement.get("attributed_conversions"):
        scores["attributed_conversions"] = engagement["attributed_conversions"]
        scores["attributed_revenue"] = round(
            sum((engagement.get("attributed_revenue") or {}).values()), 6
        )
    top = profile.get("top_categories") or []
    return {
        "traits": dict(profile.get("traits") or {}),
        "tags": list(profile.get("tags") or []),
        "lifecycle_stage": profile.get("lifecycle_stage"),
        "scores": scores,
        "top_category": top[0] if top else None,
    }


@dataclass(frozen=True)
class SmsLength:
    """An SMS as a carrier counts it: its encoding, characters (UCS-2: UTF-16 units, so an
    emoji counts two) and the messages it is sent as."""

    encoding: str
    characters: int
    segments: int
    per_segment: int


def sms_length(text: str) -> SmsLength:
    if all(char in _GSM_BASIC or char in _GSM_EXTENSION for char in text):
        encoding = "GSM-7"
        characters = sum(2 if char in _GSM_EXTENSION else 1 for char in text)
    else:
        encoding = "UCS-2"
        characters = len(text.encode("utf-16-le")) // 2
    if characters <= _SINGLE[encoding]:
        return SmsLength(encoding, characters, 1 if characters else 0, _SINGLE[encoding])
    per_part = _PART[encoding]
    return SmsLength(encoding, characters, math.ceil(characters / per_part), per_part)


@dataclass(frozen=True)
class SplitBar:
    """One variant's part of the split bar (x and width in percent of the bar)."""

    variant_id: str
    share: float
    x: float
    width: float
    colour: int


def split_bars(shares: list[tuple[str, float]], colours: int = 6) -> list[SplitBar]:
    """The variants' shares side by side on one bar, in order, each in its own colour."""
    total = sum(share for _, share in shares) or 1.0
    bars: list[SplitBar] = []
    x = 0.0
    for position, (variant_id, share) in enumerate(shares):
        width = 100.0 * share / total
        bars.append(SplitBar(variant_id, share, round(x, 3), round(width, 3), position % colours))
        x += width
    return bars


@dataclass(frozen=True)
class VariantStanding:
    """One variant as the bandit stands on it now: its split and rates (rates of its sends)."""

    variant_id: str
    name: str
    split: float | None
    sends: float
    clicks: float
    conversions: float
    posterior_mean: float
    probability_best: float | None

    @property
    def click_rate(self) -> float | None:
        return min(self.clicks / self.sends, 1.0) if self.sends > 0 else None

    @property
    def conversion_rate(self) -> float | None:
        return self.conversions / self.sends if self.sends > 0 else None


def variant_standings(answer: dict[str, Any]) -> list[VariantStanding]:
    """The variants of the content service's `GET /templates/{id}/variants`, in order."""
    return [
        VariantStanding(
            variant_id=str(variant["variant_id"]),
            name=str(variant.get("name") or ""),
            split=variant.get("split"),
            sends=float(variant.get("sends", variant["trials"]) or 0.0),
            clicks=float(variant.get("clicks") or 0.0),
            conversions=float(variant.get("conversions") or 0.0),
            posterior_mean=float(variant["posterior_mean"]),
            probability_best=variant.get("probability_best"),
        )
        for variant in answer["variants"]
    ]

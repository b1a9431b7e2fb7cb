"""Journey's read model of a profile: traits, tags, lifecycle stage and scores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from libs.common.addresses import ADDRESS_TRAITS


@dataclass
class ProfileFacts:
    """What journey knows about a profile, copied from profile.updated changes."""

    profile_id: str
    traits: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    lifecycle_stage: str | None = None
    scores: dict[str, Any] = field(default_factory=dict)

    @property
    def timezone(self) -> str | None:
        """The IANA time zone in `traits.timezone`, for waits until a time of day."""
        zone = self.traits.get("timezone")
        return zone if isinstance(zone, str) else None

    def can_reach(self, channel: str) -> bool:
        """Whether the profile has an address for the channel, by content's rule for what an
        address is (a channel that needs none, such as a webhook, always). Consent is dispatch's
        to judge: a send it suppresses falls back to the next channel."""
        trait = ADDRESS_TRAITS.get(channel)
        if trait is None:
            return True
        value = self.traits.get(trait)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True
        return isinstance(value, str) and bool(value.strip()) and len(value) <= 2048


def zone_named(name: str | None) -> ZoneInfo:
    """The IANA zone of that name; UTC when there is none or it does not exist."""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo("UTC")


def apply_change(facts: ProfileFacts, field_path: str, after: Any) -> None:
    """Copy one profile.updated change (`traits.<name>`, `tags`, …) into the facts."""
    section, _, name = field_path.partition(".")
    if section == "traits" and name:
        _set_or_remove(facts.traits, name, after)
    elif section == "scores" and name:
        _set_or_remove(facts.scores, name, after)
    elif field_path == "tags":
        facts.tags = sorted({str(tag) for tag in after}) if isinstance(after, list) else []
    elif field_path == "lifecycle_stage":
        facts.lifecycle_stage = after if isinstance(after, str) else None


def merge_facts(survivor: ProfileFacts, merged: Sequence[ProfileFacts]) -> None:
    """Fold merged profiles into the survivor: its own values win, tags are united."""
    for other in merged:
        survivor.traits = {**other.traits, **survivor.traits}
        survivor.scores = {**other.scores, **survivor.scores}
        survivor.tags = sorted({*survivor.tags, *other.tags})
        if survivor.lifecycle_stage is None:
            survivor.lifecycle_stage = other.lifecycle_stage


def _set_or_remove(values: dict[str, Any], name: str, after: Any) -> None:
    if after is None:
        values.pop(name, None)
    else:
        values[name] = after

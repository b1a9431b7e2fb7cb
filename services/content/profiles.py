"""Content's read model of a profile: the traits, tags, lifecycle stage and scores templates use,
copied from `profile.updated` changes, and the address each channel sends to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from services.content.templates import ADDRESS_TRAITS


@dataclass
class ProfileFacts:
    """What content knows about one person."""

    profile_id: str
    traits: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    lifecycle_stage: str | None = None
    scores: dict[str, Any] = field(default_factory=dict)

    def as_variable(self) -> dict[str, Any]:
        """`profile` as templates see it."""
        return {
            "id": self.profile_id,
            "traits": self.traits,
            "tags": self.tags,
            "lifecycle_stage": self.lifecycle_stage,
            "scores": self.scores,
        }


def apply_change(facts: ProfileFacts, path: str, after: Any) -> None:
    """Apply one `profile.updated` change; fields templates do not use are ignored."""
    if path.startswith("traits."):
        _set_or_remove(facts.traits, path.removeprefix("traits."), after)
    elif path.startswith("scores."):
        _set_or_remove(facts.scores, path.removeprefix("scores."), after)
    elif path == "tags":
        facts.tags = (
            [tag for tag in after if isinstance(tag, str)] if isinstance(after, list) else []
        )
    elif path == "lifecycle_stage":
        facts.lifecycle_stage = after if isinstance(after, str) else None


def merge_facts(survivor: ProfileFacts, merged: Sequence[ProfileFacts]) -> None:
    """The survivor keeps its own values and gains what only the merged profiles knew."""
    for other in merged:
        survivor.traits = {**other.traits, **survivor.traits}
        survivor.scores = {**other.scores, **survivor.scores}
        survivor.tags = sorted(set(survivor.tags) | set(other.tags))
        survivor.lifecycle_stage = survivor.lifecycle_stage or other.lifecycle_stage


def recipient_for(channel: str, facts: ProfileFacts) -> str | None:
    """The channel's address from the profile's traits; None when it has none (or needs none)."""
    trait = ADDRESS_TRAITS.get(channel)
    if trait is None:
        return None
    value = facts.traits.get(trait)
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or len(value) > 2048:
        return None
    return value.strip()


def needs_recipient(channel: str) -> bool:
    return channel in ADDRESS_TRAITS


def _set_or_remove(values: dict[str, Any], name: str, after: Any) -> None:
    if after is None:
        values.pop(name, None)
    else:
        values[name] = after

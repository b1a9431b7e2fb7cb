"""The profile read model: what a service that decides between messages knows about a person.

Profile owns the truth; segment and journey each keep this copy in their own schema, changed
only by the facts `behavior.occurred` and `profile.updated` carry, and by merges and erasures.
One definition of the facts, of how a change applies and of how a merge folds, so the copies
cannot disagree (decision 0016).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from libs.common.addresses import ADDRESS_TRAITS

_MAX_ADDRESS_LENGTH = 2048


@dataclass
class ProfileFacts:
    """One person's facts: traits, tags, lifecycle stage, scores and top category."""

    profile_id: str
    traits: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    lifecycle_stage: str | None = None
    scores: dict[str, Any] = field(default_factory=dict)
    # The first of `features.top_categories`: what a template may say and a variant is chosen by.
    top_category: str | None = None

    @property
    def timezone(self) -> str | None:
        """The IANA time zone in `traits.timezone`, as given (unchecked)."""
        zone = self.traits.get("timezone")
        return zone if isinstance(zone, str) and zone else None

    def columns(self) -> StoredColumns:
        """The stored columns, copied: to tell later whether the facts changed."""
        return (
            dict(self.traits),
            list(self.tags),
            self.lifecycle_stage,
            dict(self.scores),
            self.top_category,
        )

    def recipient(self, channel: str) -> str | None:
        """The channel's address from the traits; None when there is none (or none is needed)."""
        trait = ADDRESS_TRAITS.get(channel)
        if trait is None:
            return None
        value = self.traits.get(trait)
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip() or len(value) > _MAX_ADDRESS_LENGTH:
            return None
        return value.strip()

    def can_reach(self, channel: str) -> bool:
        """Whether the channel has an address for this person (a channel that needs none, such
        as a webhook, always). Consent is dispatch's to judge."""
        return channel not in ADDRESS_TRAITS or self.recipient(channel) is not None


StoredColumns = tuple[dict[str, Any], list[str], str | None, dict[str, Any], str | None]


def normalised_tags(value: Any) -> list[str]:
    """Tags as every copy keeps them: the distinct non-empty strings, sorted."""
    if not isinstance(value, list):
        return []
    return sorted({tag for tag in value if isinstance(tag, str) and tag})


def apply_change(facts: ProfileFacts, path: str, after: Any) -> set[str]:
    """Apply one change (`traits.<name>`, `scores.<name>`, `tags`, `lifecycle_stage`,
    `features.top_categories`); the reference keys it touches, for the segments that read
    them. A path the read model does not keep is ignored."""
    section, _, name = path.partition(".")
    if section == "traits" and name:
        _set_or_remove(facts.traits, name, after)
        return {f"trait:{name}"}
    if section == "scores" and name:
        _set_or_remove(facts.scores, name, after)
        return {f"score:{name}"}
    if path == "tags":
        before = set(facts.tags)
        facts.tags = normalised_tags(after)
        return {f"tag:{tag}" for tag in before.symmetric_difference(facts.tags)}
    if path == "lifecycle_stage":
        facts.lifecycle_stage = after if isinstance(after, str) else None
        return {"lifecycle"}
    if path == "features.top_categories":
        first = after[0] if isinstance(after, list) and after else None
        facts.top_category = first if isinstance(first, str) and first else None
        return {"top_category"}
    return set()


def apply_changes(facts: ProfileFacts, changes: Iterable[tuple[str, Any]]) -> set[str]:
    """Apply changes in order; every reference key they touch."""
    touched: set[str] = set()
    for path, after in changes:
        touched |= apply_change(facts, path, after)
    return touched


def merge_facts(survivor: ProfileFacts, merged: Sequence[ProfileFacts]) -> None:
    """Fold merged profiles into the survivor: what it already knows wins, tags are united."""
    for other in merged:
        survivor.traits = {**other.traits, **survivor.traits}
        survivor.scores = {**other.scores, **survivor.scores}
        survivor.tags = sorted({*survivor.tags, *other.tags})
        survivor.lifecycle_stage = survivor.lifecycle_stage or other.lifecycle_stage
        survivor.top_category = survivor.top_category or other.top_category


def _set_or_remove(values: dict[str, Any], name: str, after: Any) -> None:
    if after is None:
        values.pop(name, None)
    else:
        values[name] = after

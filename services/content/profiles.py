"""Content's read model of a profile, copied from `profile.updated` changes: the traits, tags,
lifecycle stage and scores templates use, and the top category a variant is chosen by; and the
address each channel sends to."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from libs.common.addresses import ADDRESS_TRAITS
from libs.common.profile_copies import StoredColumns, stored_columns


@dataclass
class ProfileFacts:
    """What content knows about one person."""

    profile_id: str
    traits: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    lifecycle_stage: str | None = None
    scores: dict[str, Any] = field(default_factory=dict)
    # The first of `features.top_categories`: part of the context a variant is chosen in.
    top_category: str | None = None

    def as_variable(self) -> dict[str, Any]:
        """`profile` as templates see it."""
        return {
            "id": self.profile_id,
            "traits": self.traits,
            "tags": self.tags,
            "lifecycle_stage": self.lifecycle_stage,
            "scores": self.scores,
            "top_category": self.top_category,
        }


@dataclass
class ProfileBook:
    """One batch's profiles: loaded at once, changed in event order, written back at once.

    `facts` holds every profile the batch touches, None where it is erased. `decisions_of`
    follows the decisions (and waiting requests) each stored profile had before the batch: to
    the survivor it was merged into, or None when its person was erased. `survivors` are the
    profiles others were merged into.
    """

    facts: dict[str, ProfileFacts | None]
    decisions_of: dict[str, str | None] = field(default_factory=dict)
    survivors: set[str] = field(default_factory=set)
    # Each stored profile's columns when the book was opened: what `changed` compares with.
    _as_read: dict[str, tuple[StoredColumns, str | None]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._as_read = {
            profile_id: _columns(facts) for profile_id, facts in self.facts.items() if facts
        }

    def update(self, profile_id: str, changes: Iterable[tuple[str, Any]]) -> None:
        facts = self._kept(profile_id)
        for path, after in changes:
            apply_change(facts, path, after)

    def merge(self, survivor_id: str, merged_ids: Sequence[str]) -> None:
        """The survivor gains what the merged profiles knew, and their decisions."""
        survivor = self._kept(survivor_id)
        merge_facts(survivor, [self._kept(p) for p in merged_ids])
        self._move_decisions(merged_ids, survivor_id)
        self.survivors.add(survivor_id)
        for merged_id in merged_ids:
            if merged_id != survivor_id:
                self.erase(merged_id)

    def erase(self, profile_id: str) -> None:
        self.facts[profile_id] = None
        self._move_decisions([profile_id], None)

    def saved(self) -> list[ProfileFacts]:
        return [facts for facts in self.facts.values() if facts is not None]

    def changed(self) -> list[ProfileFacts]:
        """The saved profiles whose facts are not what their rows held: the others need no
        write (most profile changes are to fields content does not copy)."""
        return [
            facts
            for facts in self.saved()
            if self._as_read.get(facts.profile_id) != _columns(facts)
        ]

    def erased(self) -> list[str]:
        return [profile_id for profile_id, facts in self.facts.items() if facts is None]

    def moved_decisions(self) -> dict[str, str]:
        return {
            before: after
            for before, after in self.decisions_of.items()
            if after is not None and after != before
        }

    def erased_decisions(self) -> list[str]:
        return [before for before, after in self.decisions_of.items() if after is None]

    def _kept(self, profile_id: str) -> ProfileFacts:
        """The profile, made empty if it has no row (or its row was erased earlier on)."""
        facts = self.facts.get(profile_id)
        if facts is None:
            facts = self.facts[profile_id] = ProfileFacts(profile_id)
        return facts

    def _move_decisions(self, owners: Collection[str], to: str | None) -> None:
        for before, owner in self.decisions_of.items():
            if owner in owners:
                self.decisions_of[before] = to
        for owner in owners:
            self.decisions_of.setdefault(owner, to)


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
    elif path == "features.top_categories":
        first = after[0] if isinstance(after, list) and after else None
        facts.top_category = first if isinstance(first, str) and first else None


def merge_facts(survivor: ProfileFacts, merged: Sequence[ProfileFacts]) -> None:
    """The survivor keeps its own values and gains what only the merged profiles knew."""
    for other in merged:
        survivor.traits = {**other.traits, **survivor.traits}
        survivor.scores = {**other.scores, **survivor.scores}
        survivor.tags = sorted(set(survivor.tags) | set(other.tags))
        survivor.lifecycle_stage = survivor.lifecycle_stage or other.lifecycle_stage
        survivor.top_category = survivor.top_category or other.top_category


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


def _columns(facts: ProfileFacts) -> tuple[StoredColumns, str | None]:
    return stored_columns(facts), facts.top_category


def _set_or_remove(values: dict[str, Any], name: str, after: Any) -> None:
    if after is None:
        values.pop(name, None)
    else:
        values[name] = after

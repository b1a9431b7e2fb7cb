"""A profile's state: traits (last write wins per trait), tags, counters, and what features need."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.profile import features
from services.profile.features import Decayed, FeatureRules


@dataclass(frozen=True, slots=True)
class Observation:
    """What one call tells a profile: its name and kind, event time, traits, order, category."""

    event: str
    kind: str
    at: float
    traits: Mapping[str, Any] | None = None
    revenue: float | None = None
    category: str | None = None


@dataclass
class ProfileState:
    """Everything the profile service knows about one person, as stored in `profiles.state`.

    Times are epoch seconds of event time. Every field merges without knowing the order the
    events came in: traits by their own event time, counters by sum, decayed scores by decaying
    each contribution to a common moment.
    """

    traits: dict[str, Any] = field(default_factory=dict)
    trait_times: dict[str, float] = field(default_factory=dict)
    first_seen: float | None = None
    last_seen: float | None = None
    counters: dict[str, int] = field(default_factory=dict)
    orders: int = 0
    revenue: float = 0.0
    last_order_at: float | None = None
    activity: Decayed | None = None
    categories: dict[str, Decayed] = field(default_factory=dict)
    segments: dict[str, int] = field(default_factory=dict)
    history: int = 0

    def observe(self, observation: Observation, rules: FeatureRules) -> None:
        at = observation.at
        self.first_seen = at if self.first_seen is None else min(self.first_seen, at)
        self.last_seen = at if self.last_seen is None else max(self.last_seen, at)
        self.counters[observation.event] = self.counters.get(observation.event, 0) + 1
        self.activity = features.add_decayed(self.activity, at, 1.0, rules.activity_half_life_days)
        self.history += 1
        if observation.traits:
            self.set_traits(observation.traits, at)
        if observation.revenue is not None:
            self.orders += 1
            self.revenue += observation.revenue
            self.last_order_at = _latest(self.last_order_at, at)
        if observation.category is not None:
            self.categories[observation.category] = features.add_decayed(
                self.categories.get(observation.category),
                at,
                1.0,
                rules.category_half_life_days,
            )

    def set_traits(self, traits: Mapping[str, Any], at: float) -> None:
        """Each trait takes the value of its latest write by event time; a tie goes to the later
        call, so a client that sends two identifies in one millisecond keeps the second."""
        for name, value in traits.items():
            if at >= self.trait_times.get(name, float("-inf")):
                self.traits[name] = value
                self.trait_times[name] = at

    def absorb(self, merged: ProfileState, rules: FeatureRules) -> None:
        """Take in a profile that turned out to be the same person."""
        for name, value in merged.traits.items():
            self.set_traits({name: value}, merged.trait_times.get(name, float("-inf")))
        self.first_seen = _earliest(self.first_seen, merged.first_seen)
        self.last_seen = _latest(self.last_seen, merged.last_seen)
        for name, count in merged.counters.items():
            self.counters[name] = self.counters.get(name, 0) + count
        self.orders += merged.orders
        self.revenue += merged.revenue
        self.last_order_at = _latest(self.last_order_at, merged.last_order_at)
        self.activity = features.merge_decayed(
            self.activity, merged.activity, rules.activity_half_life_days
        )
        for name, score in merged.categories.items():
            merged_score = features.merge_decayed(
                self.categories.get(name), score, rules.category_half_life_days
            )
            if merged_score is not None:
                self.categories[name] = merged_score
        self.segments.update(merged.segments)
        self.history += merged.history

    def tags(self) -> list[str]:
        """Tags are the `tags` trait: a list of strings, or one comma-separated string."""
        raw = self.traits.get("tags")
        items = raw.split(",") if isinstance(raw, str) else raw if isinstance(raw, list) else []
        return sorted({item.strip() for item in items if isinstance(item, str) and item.strip()})

    def view(self, as_of: float, rules: FeatureRules) -> dict[str, Any]:
        """The fields `profile.updated` reports, by path, as they stand at `as_of`."""
        fields: dict[str, Any] = {f"traits.{name}": value for name, value in self.traits.items()}
        fields["tags"] = self.tags()
        if self.first_seen is not None and self.last_seen is not None:
            fields["lifecycle_stage"] = features.lifecycle_stage(
                self.first_seen, self.last_seen, self.activity, as_of, rules
            )
        scores = features.rfm(self.orders, self.revenue, self.last_order_at, as_of, rules)
        if scores is not None:
            fields["scores.rfm"] = scores.score
        if self.categories:
            fields["features.top_categories"] = features.top_categories(
                self.categories, as_of, rules.category_half_life_days
            )
        if self.segments:
            fields["segments"] = sorted(self.segments)
        return fields

    def to_json(self) -> dict[str, Any]:
        return {
            "traits": self.traits,
            "trait_times": self.trait_times,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "counters": self.counters,
            "orders": self.orders,
            "revenue": self.revenue,
            "last_order_at": self.last_order_at,
            "activity": self.activity,
            "categories": self.categories,
            "segments": self.segments,
            "history": self.history,
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> ProfileState:
        activity = document.get("activity")
        return cls(
            traits=dict(document.get("traits", {})),
            trait_times=dict(document.get("trait_times", {})),
            first_seen=document.get("first_seen"),
            last_seen=document.get("last_seen"),
            counters=dict(document.get("counters", {})),
            orders=document.get("orders", 0),
            revenue=document.get("revenue", 0.0),
            last_order_at=document.get("last_order_at"),
            activity=(activity[0], activity[1]) if activity else None,
            categories={name: (s[0], s[1]) for name, s in document.get("categories", {}).items()},
            segments=dict(document.get("segments", {})),
            history=document.get("history", 0),
        )


@dataclass(frozen=True, slots=True)
class Change:
    field: str
    before: Any
    after: Any


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Change]:
    """Every field whose value differs between two views, in a stable order."""
    names = sorted(before.keys() | after.keys())
    return [
        Change(name, before.get(name), after.get(name))
        for name in names
        if before.get(name) != after.get(name)
    ]


def _earliest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)

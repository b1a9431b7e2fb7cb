"""A profile's state: traits (last write wins per trait), tags, counters, what features need,
and its purchase days and predictive scores."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from libs.common.events.profile import LifecycleStage
from services.profile import features
from services.profile.features import Decayed, FeatureRules
from services.profile.predictions import PurchaseHistory
from services.profile.purchases import PurchaseDays
from services.profile.scoring import PredictedScores

# Outcomes that show the person engaged with a message (a delivery alone does not).
ENGAGED_OUTCOMES = frozenset({"opened", "clicked"})


@dataclass(frozen=True, slots=True)
class Observation:
    """What one call tells a profile: its name and kind, event time, traits, order (its
    revenue) or refund (the amount given back), category."""

    event: str
    kind: str
    at: float
    traits: Mapping[str, Any] | None = None
    revenue: float | None = None
    category: str | None = None
    refund: float | None = None


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
    engagement: dict[str, dict[str, int]] = field(default_factory=dict)
    last_engaged_at: float | None = None
    attributed_revenue: dict[str, float] = field(default_factory=dict)
    attributed_conversions: float = 0.0
    purchases: PurchaseDays | None = None
    predicted: PredictedScores | None = None

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
            if self.purchases is None:
                self.purchases = PurchaseDays()
            self.purchases.add(at, observation.revenue, rules.purchase_days_kept)
        if observation.refund is not None:
            # A refund lowers what the person spent, not how often they bought: the purchase
            # models count buying decisions, and RFM's frequency counts orders.
            self.revenue -= observation.refund
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

    def unset_traits(self, names: Iterable[str], at: float) -> None:
        """Remove traits, unless a later write set them: the removal's time is kept as theirs."""
        for name in names:
            if at >= self.trait_times.get(name, float("-inf")):
                self.traits.pop(name, None)
                self.trait_times[name] = at

    def change_tags(self, add: Iterable[str], remove: Iterable[str], at: float) -> None:
        """Add and remove tags: they are the `tags` trait, so the change is a write of it."""
        tags = (set(self.tags()) | set(add)) - set(remove)
        self.set_traits({"tags": sorted(tags)}, at)

    def record_outcome(self, channel: str, outcome: str, at: float) -> None:
        """Count what became of a message; an open or a click is engagement."""
        counts = self.engagement.setdefault(channel, {})
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome in ENGAGED_OUTCOMES:
            self.last_engaged_at = _latest(self.last_engaged_at, at)

    def record_credit(self, value: float | None, currency: str | None, share: float) -> None:
        """Add a conversion's credit: its share of the conversion, and of the value."""
        self.attributed_conversions += share
        if value is not None and currency is not None:
            self.attributed_revenue[currency] = (
                self.attributed_revenue.get(currency, 0.0) + value * share
            )

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
        if merged.purchases is not None:
            if self.purchases is None:
                self.purchases = PurchaseDays()
            self.purchases.absorb(merged.purchases, rules.purchase_days_kept)
        # Kept until the merged purchases are scored (handlers re-score them when a model exists).
        self.predicted = self.predicted or merged.predicted
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
        for channel, counts in merged.engagement.items():
            mine = self.engagement.setdefault(channel, {})
            for outcome, count in counts.items():
                mine[outcome] = mine.get(outcome, 0) + count
        self.last_engaged_at = _latest(self.last_engaged_at, merged.last_engaged_at)
        for currency, value in merged.attributed_revenue.items():
            self.attributed_revenue[currency] = self.attributed_revenue.get(currency, 0.0) + value
        self.attributed_conversions += merged.attributed_conversions

    def tags(self) -> list[str]:
        """Tags are the `tags` trait: a list of strings, or one comma-separated string."""
        raw = self.traits.get("tags")
        items = raw.split(",") if isinstance(raw, str) else raw if isinstance(raw, list) else []
        return sorted({item.strip() for item in items if isinstance(item, str) and item.strip()})

    def next_review(self, as_of: float, rules: FeatureRules) -> float | None:
        """When this profile's view may next change with no event (features.next_review)."""
        return features.next_review(
            self.first_seen, self.last_seen, self.activity, self.last_order_at, as_of, rules
        )

    def purchase_history(self, as_of: float) -> PurchaseHistory | None:
        """The purchases as the purchase models see them at `as_of` (None before any)."""
        return None if self.purchases is None else self.purchases.history(as_of)

    def lifecycle_stage(self, as_of: float, rules: FeatureRules) -> LifecycleStage | None:
        if self.first_seen is None or self.last_seen is None:
            return None
        churn_risk = None if self.predicted is None else self.predicted.churn_risk
        return features.lifecycle_stage(
            self.first_seen, self.last_seen, self.activity, as_of, rules, churn_risk
        )

    def view(self, as_of: float, rules: FeatureRules) -> dict[str, Any]:
        """The fields a change of the profile reports (`profile.updated`, or the
        `profile_changes` of a call's behaviour), by path, as they stand at `as_of`.

        Segment memberships are not among them: segment.v1 announces them, and profile keeps
        them for `GET /profiles/{id}` only. Predictive scores are as of their last computation
        (a purchase, or a fit's re-score), not of `as_of`: they are announced when they are
        computed, rounded, so that time alone does not change them between two fits.
        """
        fields: dict[str, Any] = {f"traits.{name}": value for name, value in self.traits.items()}
        fields["tags"] = self.tags()
        stage = self.lifecycle_stage(as_of, rules)
        if stage is not None:
            fields["lifecycle_stage"] = stage
        scores = features.rfm(self.orders, self.revenue, self.last_order_at, as_of, rules)
        if scores is not None:
            fields["scores.rfm"] = scores.score
        if self.predicted is not None:
            fields.update({f"scores.{n}": v for n, v in self.predicted.values.items()})
        if self.categories:
            fields["features.top_categories"] = features.top_categories(
                self.categories, as_of, rules.category_half_life_days
            )
        fields.update(self._engagement_view())
        return fields

    def _engagement_view(self) -> dict[str, Any]:
        """Outcomes and credits as scores, so segment and journey conditions can use them."""
        fields: dict[str, Any] = {
            f"scores.{channel}_{outcome}": count
            for channel, counts in self.engagement.items()
            for outcome, count in counts.items()
        }
        if self.last_engaged_at is not None:
            fields["scores.last_engaged_at"] = self.last_engaged_at
        if self.attributed_conversions:
            fields["scores.attributed_conversions"] = round(self.attributed_conversions, 6)
            fields["scores.attributed_revenue"] = round(sum(self.attributed_revenue.values()), 6)
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
            "engagement": self.engagement,
            "last_engaged_at": self.last_engaged_at,
            "attributed_revenue": self.attributed_revenue,
            "attributed_conversions": self.attributed_conversions,
            "purchases": None if self.purchases is None else self.purchases.to_json(),
            "predicted": None if self.predicted is None else self.predicted.to_json(),
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> ProfileState:
        activity = document.get("activity")
        purchases, predicted = document.get("purchases"), document.get("predicted")
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
            engagement={
                channel: dict(counts) for channel, counts in document.get("engagement", {}).items()
            },
            last_engaged_at=document.get("last_engaged_at"),
            attributed_revenue=dict(document.get("attributed_revenue", {})),
            attributed_conversions=document.get("attributed_conversions", 0.0),
            purchases=None if purchases is None else PurchaseDays.from_json(purchases),
            predicted=None if predicted is None else PredictedScores.from_json(predicted),
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

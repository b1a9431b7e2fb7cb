"""Computed features: lifecycle stage, RFM scores, orders and refunds, decayed category
preferences."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from libs.common.events.profile import LifecycleStage
from services.profile.settings import ProfileSettings

DAY = 86_400.0
TOP_CATEGORIES = 3

# A decayed quantity: its value at a moment (epoch seconds). Stored as a pair, it can take
# events in any order: each contribution is decayed to the pair's moment before adding.
Decayed = tuple[float, float]


@dataclass(frozen=True, slots=True)
class FeatureRules:
    """The thresholds features are computed with, from settings."""

    new_days: float = 7
    active_days: float = 14
    active_min_activity: float = 3.0
    at_risk_days: float = 30
    dormant_days: float = 90
    activity_half_life_days: float = 14
    category_half_life_days: float = 30
    rfm_recency_days: tuple[float, ...] = (7, 30, 90, 180)
    rfm_frequency_orders: tuple[float, ...] = (10, 5, 3, 2)
    rfm_monetary_revenue: tuple[float, ...] = (5000, 1000, 500, 100)
    revenue_events: frozenset[str] = frozenset({"Order Completed", "order_completed"})
    refund_events: frozenset[str] = frozenset({"Order Refunded", "order_refunded"})
    purchase_days_kept: int = 1000
    at_risk_churn_risk: float = 0.7

    @classmethod
    def from_settings(cls, settings: ProfileSettings) -> FeatureRules:
        return cls(
            new_days=settings.lifecycle_new_days,
            active_days=settings.lifecycle_active_days,
            active_min_activity=settings.lifecycle_active_min_activity,
            at_risk_days=settings.lifecycle_at_risk_days,
            dormant_days=settings.lifecycle_dormant_days,
            activity_half_life_days=settings.activity_half_life_days,
            category_half_life_days=settings.category_half_life_days,
            rfm_recency_days=tuple(settings.rfm_recency_days),
            rfm_frequency_orders=tuple(settings.rfm_frequency_orders),
            rfm_monetary_revenue=tuple(settings.rfm_monetary_revenue),
            revenue_events=frozenset(settings.profile_revenue_events),
            refund_events=frozenset(settings.profile_refund_events),
            purchase_days_kept=settings.profile_purchase_days_kept,
            at_risk_churn_risk=settings.lifecycle_at_risk_churn_risk,
        )


def decay(value: float, elapsed_seconds: float, half_life_days: float) -> float:
    """`value` after `elapsed_seconds` of halving every `half_life_days` (growing if negative)."""
    return value * math.pow(0.5, elapsed_seconds / (half_life_days * DAY))


def add_decayed(
    current: Decayed | None, at: float, weight: float, half_life_days: float
) -> Decayed:
    """`current` plus `weight` observed at `at`, kept at the later of the two moments."""
    if current is None:
        return (weight, at)
    value, moment = current
    if at >= moment:
        return (decay(value, at - moment, half_life_days) + weight, at)
    return (value + decay(weight, moment - at, half_life_days), moment)


def decayed_value(current: Decayed | None, as_of: float, half_life_days: float) -> float:
    if current is None:
        return 0.0
    value, moment = current
    return decay(value, max(0.0, as_of - moment), half_life_days)


def merge_decayed(a: Decayed | None, b: Decayed | None, half_life_days: float) -> Decayed | None:
    if a is None or b is None:
        return a or b
    return add_decayed(a, b[1], b[0], half_life_days)


def lifecycle_stage(
    first_seen: float,
    last_seen: float,
    activity: Decayed | None,
    as_of: float,
    rules: FeatureRules,
    churn_risk: float | None = None,
) -> LifecycleStage:
    """Recency bands first; within the active band, frequency (decayed activity) decides.

    churned: unseen for more than dormant_days; dormant: more than at_risk_days; new: first
    seen within new_days; active: seen within active_days with at least active_min_activity
    decayed events, unless the purchase model's churn risk is at least at_risk_churn_risk (a
    visitor who keeps browsing but has stopped buying); at_risk otherwise.
    """
    idle_days = (as_of - last_seen) / DAY
    if idle_days > rules.dormant_days:
        return "churned"
    if idle_days > rules.at_risk_days:
        return "dormant"
    if (as_of - first_seen) / DAY <= rules.new_days:
        return "new"
    frequency = decayed_value(activity, as_of, rules.activity_half_life_days)
    active = idle_days <= rules.active_days and frequency >= rules.active_min_activity
    if active and (churn_risk is None or churn_risk < rules.at_risk_churn_risk):
        return "active"
    return "at_risk"


# A review runs this long after the boundary it is for, so the comparisons above (strict or
# not) have all turned by then.
_REVIEW_MARGIN_SECONDS = 1.0


def next_review(
    first_seen: float | None,
    last_seen: float | None,
    activity: Decayed | None,
    last_order_at: float | None,
    as_of: float,
    rules: FeatureRules,
) -> float | None:
    """The first moment after `as_of` at which the lifecycle stage or the RFM recency score may
    change with no new event; None when neither can any more (churned, and no order within the
    last recency band).

    These features age: someone active today is at risk in a month without doing anything, and
    segments and journeys that ask for the stage must hear about it then, not at the next event.
    """
    moments: list[float] = []
    if first_seen is not None and last_seen is not None:
        moments.append(first_seen + rules.new_days * DAY)
        moments.extend(
            last_seen + days * DAY
            for days in (rules.active_days, rules.at_risk_days, rules.dormant_days)
        )
        fades = _activity_fades_at(activity, rules)
        if fades is not None:
            moments.append(fades)
    if last_order_at is not None:
        moments.extend(last_order_at + days * DAY for days in rules.rfm_recency_days)
    # A stage holds up to and including its boundary (`<=`) and changes just after it, so a
    # boundary at `as_of` itself is still ahead.
    later = [moment for moment in moments if moment >= as_of]
    return min(later) + _REVIEW_MARGIN_SECONDS if later else None


def _activity_fades_at(activity: Decayed | None, rules: FeatureRules) -> float | None:
    """When decayed activity falls below what an active profile needs (None: it is already
    below, or no activity is needed)."""
    if activity is None or rules.active_min_activity <= 0:
        return None
    value, moment = activity
    if value <= rules.active_min_activity:
        return None
    halvings = math.log2(value / rules.active_min_activity)
    return moment + halvings * rules.activity_half_life_days * DAY


@dataclass(frozen=True, slots=True)
class Rfm:
    recency: int
    frequency: int
    monetary: int

    @property
    def score(self) -> int:
        """The three digits as one number, e.g. 455: sorts by recency, then frequency."""
        return self.recency * 100 + self.frequency * 10 + self.monetary


def rfm(
    orders: int, revenue: float, last_order_at: float | None, as_of: float, rules: FeatureRules
) -> Rfm | None:
    """Scores 1-5 against fixed thresholds; None for a profile that never ordered.

    Fixed thresholds rather than quintiles of the population, so one profile's score never
    changes because of someone else's order.
    """
    if orders <= 0 or last_order_at is None:
        return None
    days = max(0.0, (as_of - last_order_at) / DAY)
    recency = _score_at_most(days, rules.rfm_recency_days)
    frequency = _score_at_least(orders, rules.rfm_frequency_orders)
    monetary = _score_at_least(revenue, rules.rfm_monetary_revenue)
    return Rfm(recency, frequency, monetary)


def _score_at_most(value: float, thresholds: Sequence[float]) -> int:
    for index, threshold in enumerate(thresholds):
        if value <= threshold:
            return 5 - index
    return 1


def _score_at_least(value: float, thresholds: Sequence[float]) -> int:
    for index, threshold in enumerate(thresholds):
        if value >= threshold:
            return 5 - index
    return 1


def order_revenue(event: str, properties: Mapping[str, Any], rules: FeatureRules) -> float | None:
    """The revenue of an order: `properties.revenue`, else `properties.total`, on a revenue event.

    None when the event is not an order; a missing or non-numeric amount counts as an order of 0.
    """
    return _amount(properties) if event in rules.revenue_events else None


def refunded(event: str, properties: Mapping[str, Any], rules: FeatureRules) -> float | None:
    """The amount a refund event gives back, read as an order's revenue; None for other events."""
    return _amount(properties) if event in rules.refund_events else None


def _amount(properties: Mapping[str, Any]) -> float:
    for name in ("revenue", "total"):
        amount = properties.get(name)
        if isinstance(amount, int | float) and not isinstance(amount, bool) and amount >= 0:
            return float(amount)
    return 0.0


def category_of(properties: Mapping[str, Any], call_category: str | None = None) -> str | None:
    """The category a behaviour shows interest in: `properties.category`, else the page's."""
    category = properties.get("category", call_category)
    if isinstance(category, str) and category.strip():
        return category.strip()[:255]
    return None


def top_categories(scores: Mapping[str, Decayed], as_of: float, half_life_days: float) -> list[str]:
    """The most preferred categories now, best first, ties by name."""
    decayed = {name: decayed_value(score, as_of, half_life_days) for name, score in scores.items()}
    ranked = sorted(decayed, key=lambda name: (-decayed[name], name))
    return ranked[:TOP_CATEGORIES]

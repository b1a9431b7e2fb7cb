"""Computed features: lifecycle thresholds, RFM scores and decayed category preferences."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.common.events.profile import LifecycleStage
from services.profile.features import (
    DAY,
    FeatureRules,
    add_decayed,
    category_of,
    decayed_value,
    lifecycle_stage,
    next_review,
    order_revenue,
    refunded,
    rfm,
    top_categories,
)

RULES = FeatureRules()
NOW = 1_000 * DAY


@pytest.mark.parametrize(
    ("first_seen_days_ago", "last_seen_days_ago", "activity", "expected"),
    [
        (3, 1, 1.0, "new"),
        (60, 2, 5.0, "active"),
        (60, 2, 1.0, "at_risk"),
        (60, 20, 5.0, "at_risk"),
        (60, 30, 5.0, "at_risk"),
        (200, 31, 5.0, "dormant"),
        (200, 90, 5.0, "dormant"),
        (200, 91, 5.0, "churned"),
    ],
)
def test_lifecycle_stage_follows_recency_then_frequency(
    first_seen_days_ago: float, last_seen_days_ago: float, activity: float, expected: LifecycleStage
) -> None:
    stage = lifecycle_stage(
        NOW - first_seen_days_ago * DAY,
        NOW - last_seen_days_ago * DAY,
        (activity, NOW),
        NOW,
        RULES,
    )
    assert stage == expected


@pytest.mark.parametrize(
    ("churn_risk", "last_seen_days_ago", "expected"),
    [
        (None, 2, "active"),
        (0.69, 2, "active"),
        (0.7, 2, "at_risk"),
        (0.95, 40, "dormant"),
        (0.1, 40, "dormant"),
    ],
)
def test_a_churn_risk_from_the_threshold_makes_an_active_profile_at_risk_and_nothing_else(
    churn_risk: float | None, last_seen_days_ago: float, expected: LifecycleStage
) -> None:
    last_seen = NOW - last_seen_days_ago * DAY
    stage = lifecycle_stage(NOW - 60 * DAY, last_seen, (5.0, NOW), NOW, RULES, churn_risk)
    assert stage == expected


def test_lifecycle_thresholds_come_from_the_rules() -> None:
    strict = FeatureRules(at_risk_days=5, dormant_days=10)
    assert lifecycle_stage(NOW - 60 * DAY, NOW - 6 * DAY, (9.0, NOW), NOW, strict) == "dormant"


def test_rfm_scores_recent_frequent_big_spenders_highest() -> None:
    best = rfm(orders=12, revenue=6000, last_order_at=NOW - DAY, as_of=NOW, rules=RULES)
    assert best is not None and best.score == 555
    lapsed = rfm(orders=1, revenue=50, last_order_at=NOW - 400 * DAY, as_of=NOW, rules=RULES)
    assert lapsed is not None and lapsed.score == 111
    middle = rfm(orders=3, revenue=500, last_order_at=NOW - 30 * DAY, as_of=NOW, rules=RULES)
    assert middle is not None and (middle.recency, middle.frequency, middle.monetary) == (4, 3, 3)


def test_rfm_is_absent_without_orders() -> None:
    assert rfm(orders=0, revenue=0, last_order_at=None, as_of=NOW, rules=RULES) is None


def test_order_revenue_reads_revenue_then_total_on_revenue_events_only() -> None:
    assert order_revenue("order_completed", {"revenue": 10, "total": 99}, RULES) == 10.0
    assert order_revenue("order_completed", {"total": 99.5}, RULES) == 99.5
    assert order_revenue("order_completed", {"revenue": "lots"}, RULES) == 0.0
    assert order_revenue("product_viewed", {"revenue": 10}, RULES) is None


def test_the_segment_spec_names_orders_and_refunds_as_written_and_in_snake_case() -> None:
    assert order_revenue("Order Completed", {"revenue": 25}, RULES) == 25.0
    assert order_revenue("order_completed", {"revenue": 25}, RULES) == 25.0
    assert order_revenue("Order Refunded", {"revenue": 25}, RULES) is None
    assert refunded("Order Refunded", {"total": 30}, RULES) == 30.0
    assert refunded("order_refunded", {"revenue": 12, "total": 30}, RULES) == 12.0
    assert refunded("Order Completed", {"total": 30}, RULES) is None


def test_decay_halves_per_half_life() -> None:
    assert decayed_value((8.0, NOW), NOW + 60 * DAY, 30) == pytest.approx(2.0)


def test_decayed_sums_do_not_depend_on_event_order() -> None:
    times = [NOW, NOW - 10 * DAY, NOW + 5 * DAY, NOW - 40 * DAY]
    forward = backward = None
    for at in times:
        forward = add_decayed(forward, at, 1.0, 30)
    for at in reversed(times):
        backward = add_decayed(backward, at, 1.0, 30)
    as_of = NOW + 10 * DAY
    assert decayed_value(forward, as_of, 30) == pytest.approx(decayed_value(backward, as_of, 30))


def test_recent_interest_outranks_old_frequent_interest() -> None:
    scores = {
        "tea": add_decayed(add_decayed(None, NOW - 120 * DAY, 1, 30), NOW - 120 * DAY, 1, 30),
        "teaware": add_decayed(None, NOW - DAY, 1, 30),
        "snacks": add_decayed(None, NOW - 200 * DAY, 1, 30),
        "gifts": add_decayed(None, NOW - 300 * DAY, 1, 30),
    }
    assert top_categories(scores, NOW, 30) == ["teaware", "tea", "snacks"]


def test_category_comes_from_properties_else_the_page() -> None:
    assert category_of({"category": " tea "}) == "tea"
    assert category_of({}, "checkout") == "checkout"
    assert category_of({"category": 3}) is None


def _features_at(
    first: float, last: float, activity: float, order: float | None, at: float
) -> tuple[str, int | None]:
    stage = lifecycle_stage(first, last, (activity, last), at, RULES)
    scores = rfm(1 if order else 0, 10.0, order, at, RULES)
    return stage, None if scores is None else scores.recency


def test_an_active_customer_left_alone_is_reviewed_at_each_stage_until_churned() -> None:
    first, last, order = NOW - 60 * DAY, NOW, NOW
    at: float | None = NOW
    seen = []
    while at is not None:
        seen.append(_features_at(first, last, 5.0, order, at))
        at = next_review(first, last, (5.0, last), order, at, RULES)
    stages = [stage for stage, _ in seen]
    assert list(dict.fromkeys(stages)) == ["active", "at_risk", "dormant", "churned"]
    assert [recency for _, recency in seen][-1] == 1


@given(
    first_ago=st.floats(0, 400),
    idle=st.floats(0, 400),
    activity=st.floats(0, 50),
    order_ago=st.none() | st.floats(0, 400),
    fraction=st.floats(0, 1),
)
def test_nothing_changes_between_reviews_and_the_last_review_is_final(
    first_ago: float, idle: float, activity: float, order_ago: float | None, fraction: float
) -> None:
    first = NOW - max(first_ago, idle) * DAY
    last = NOW - idle * DAY
    order = None if order_ago is None else NOW - order_ago * DAY
    due = next_review(first, last, (activity, last), order, NOW, RULES)
    now_features = _features_at(first, last, activity, order, NOW)
    if due is None:
        assert _features_at(first, last, activity, order, NOW + 1000 * DAY) == now_features
        return
    assert due > NOW
    # Any moment before the review (the margin aside) shows what `NOW` shows.
    between = NOW + fraction * max(0.0, due - 2 - NOW)
    assert _features_at(first, last, activity, order, between) == now_features

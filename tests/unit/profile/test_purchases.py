"""Purchase days: one per UTC day, order-free, folded past a bound without losing the history."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from services.profile.predictions import PurchaseHistory, histories_from_purchases
from services.profile.purchases import PurchaseDays

DAY = 86_400.0
HOUR = 3_600.0
T0 = 20_000 * DAY  # a UTC midnight (2024-10-04)
KEEP = 1000


def purchases_of(*purchases: tuple[float, float], keep: int = KEEP) -> PurchaseDays:
    days = PurchaseDays()
    for at, value in purchases:
        days.add(at, value, keep)
    return days


def reference_history(purchases: list[tuple[float, float]], as_of: float) -> PurchaseHistory:
    """What the model's own conversion makes of the same purchases."""
    moments = [(datetime.fromtimestamp(at, UTC), value) for at, value in purchases]
    return histories_from_purchases({"p": moments}, datetime.fromtimestamp(as_of, UTC))["p"]


def test_purchases_on_one_day_are_one_purchase_worth_their_sum() -> None:
    days = purchases_of((T0 + 9 * HOUR, 20.0), (T0 + 15 * HOUR, 5.0), (T0 + 3 * DAY, 40.0))
    assert days.days == [(T0 + 9 * HOUR, 25.0), (T0 + 3 * DAY, 40.0)]
    history = days.history(T0 + 10 * DAY)
    assert history == PurchaseHistory(frequency=1, recency=3.0, age=10.0, monetary=40.0)


def test_no_history_before_the_first_purchase() -> None:
    days = purchases_of((T0 + DAY, 10.0))
    assert days.history(T0) is None
    assert days.history(T0 + DAY + 1) == PurchaseHistory(0, 0.0, 1 / DAY, 0.0)


def test_a_purchase_after_the_moment_asked_is_left_out() -> None:
    days = purchases_of((T0, 10.0), (T0 + 5 * DAY, 30.0))
    assert days.history(T0 + 2 * DAY) == PurchaseHistory(0, 0.0, 2.0, 0.0)


def test_the_history_is_the_one_the_models_own_conversion_gives() -> None:
    rng = random.Random(7)
    purchases = [(T0 + rng.uniform(0, 400) * DAY, rng.uniform(0, 90)) for _ in range(60)]
    as_of = T0 + 365.5 * DAY
    history = purchases_of(*purchases).history(as_of)
    expected = reference_history(purchases, as_of)
    assert history is not None
    assert (history.frequency, history.recency) == (expected.frequency, expected.recency)
    assert history.age == pytest.approx(expected.age)
    assert history.monetary == pytest.approx(expected.monetary)


def test_the_order_purchases_come_in_does_not_matter() -> None:
    rng = random.Random(3)
    purchases = [(T0 + rng.uniform(0, 100) * DAY, float(rng.randint(1, 50))) for _ in range(40)]
    shuffled = rng.sample(purchases, len(purchases))
    assert purchases_of(*purchases) == purchases_of(*shuffled)


def test_merging_two_profiles_is_as_if_one_had_made_every_purchase() -> None:
    rng = random.Random(11)
    mine = [(T0 + rng.uniform(0, 200) * DAY, 10.0) for _ in range(15)]
    theirs = [(T0 + rng.uniform(0, 200) * DAY, 20.0) for _ in range(15)]
    survivor = purchases_of(*mine)
    survivor.absorb(purchases_of(*theirs), KEEP)
    assert survivor == purchases_of(*mine, *theirs)


def test_past_the_bound_old_repeat_days_are_folded_and_the_history_stays_exact() -> None:
    purchases = [(T0 + day * DAY + HOUR, float(day)) for day in range(0, 30, 2)]  # 15 days
    folded = purchases_of(*purchases, keep=5)
    as_of = T0 + 40 * DAY
    assert len(folded.days) == 5
    assert folded.days[0] == purchases[0]  # the first day stays
    assert folded.days[-1] == purchases[-1]
    assert folded.folded_days == 10
    assert folded.history(as_of) == purchases_of(*purchases).history(as_of)


def test_a_late_purchase_on_a_folded_day_counts_as_one_more_day() -> None:
    folded = purchases_of(*[(T0 + day * DAY, 10.0) for day in range(10)], keep=3)
    assert folded.folded_through is not None
    folded.add(T0 + 2 * DAY + HOUR, 5.0, 3)  # day 2 was folded: it was bought on already
    history = folded.history(T0 + 20 * DAY)
    assert history is not None
    assert history.frequency == 10  # the known approximation: 9 repeat days are really 9
    assert len(folded.days) == 3


def test_purchase_days_survive_their_json_document() -> None:
    folded = purchases_of(*[(T0 + day * DAY, 10.0 + day) for day in range(10)], keep=4)
    assert PurchaseDays.from_json(folded.to_json()) == folded

"""The five rule models' shares and the attribution window."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from libs.common.events.conversion import AttributionModel
from services.attribution.credit import Touch, credits, shares, touches_in_window

CONVERTED = datetime(2025, 3, 14, 12, tzinfo=UTC)
MODELS: list[AttributionModel] = [
    "last_touch",
    "first_touch",
    "linear",
    "time_decay",
    "position_based",
]


def touch(message_id: str, hours_before: float) -> Touch:
    return Touch(
        message_id=message_id,
        occurred_at=CONVERTED - timedelta(hours=hours_before),
        channel="email",
        journey_id="jrn",
        journey_version=1,
        node_id="node",
        template_id="tpl",
        variant_id=None,
    )


def ages(*hours: float) -> list[timedelta]:
    return [timedelta(hours=h) for h in hours]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shares_are_positive_somewhere_and_sum_to_one(model: AttributionModel, count: int) -> None:
    result = shares(model, ages(*range(count, 0, -1)))
    assert len(result) == count
    assert math.isclose(sum(result), 1.0)
    assert all(share >= 0 for share in result)


@pytest.mark.parametrize("model", MODELS)
def test_one_touch_gets_all_the_credit(model: AttributionModel) -> None:
    assert shares(model, ages(5)) == [1.0]


def test_last_and_first_touch_credit_one_end() -> None:
    assert shares("last_touch", ages(3, 2, 1)) == [0.0, 0.0, 1.0]
    assert shares("first_touch", ages(3, 2, 1)) == [1.0, 0.0, 0.0]


def test_linear_shares_equally() -> None:
    assert shares("linear", ages(4, 3, 2, 1)) == [0.25] * 4


def test_time_decay_halves_per_half_life() -> None:
    result = shares("time_decay", ages(48, 24, 0), half_life=timedelta(days=1))
    assert result == pytest.approx([1 / 7, 2 / 7, 4 / 7])


def test_time_decay_of_two_equal_ages_is_even() -> None:
    assert shares("time_decay", ages(5, 5)) == pytest.approx([0.5, 0.5])


def test_position_based_gives_the_ends_forty_percent() -> None:
    assert shares("position_based", ages(2, 1)) == [0.5, 0.5]
    assert shares("position_based", ages(3, 2, 1)) == pytest.approx([0.4, 0.2, 0.4])
    assert shares("position_based", ages(4, 3, 2, 1)) == pytest.approx([0.4, 0.1, 0.1, 0.4])


def test_credits_leave_out_touches_with_no_share() -> None:
    touches = [touch("a", 3), touch("b", 2), touch("c", 1)]
    credited = credits("last_touch", touches, CONVERTED)
    assert [(c.touch.message_id, c.share) for c in credited] == [("c", 1.0)]


def test_window_drops_old_touches_and_touches_after_the_conversion() -> None:
    touches = [touch("old", 24 * 8), touch("in", 24 * 6), touch("late", -1), touch("now", 0)]
    kept = touches_in_window(touches, CONVERTED, timedelta(days=7))
    assert [t.message_id for t in kept] == ["in", "now"]


def test_window_counts_a_message_once_at_its_latest_touch_before_the_conversion() -> None:
    touches = [touch("m", 5), touch("m", 1), touch("m", -2), touch("n", 3)]
    kept = touches_in_window(touches, CONVERTED, timedelta(days=7))
    assert [(t.message_id, CONVERTED - t.occurred_at) for t in kept] == [
        ("n", timedelta(hours=3)),
        ("m", timedelta(hours=1)),
    ]


def test_no_touch_in_window_means_no_credit() -> None:
    assert (
        credits(
            "linear", touches_in_window([touch("a", 500)], CONVERTED, timedelta(days=7)), CONVERTED
        )
        == []
    )

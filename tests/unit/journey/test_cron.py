"""Cron expressions of recurring broadcasts: parsing, matching, and the times they give."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.journey.conditions import InvalidDefinition
from services.journey.cron import Cron

# A Saturday.
START = datetime(2026, 3, 14, 9, 0)


def test_every_monday_at_ten_gives_the_next_mondays() -> None:
    mondays = Cron.parse("0 10 * * MON").times(START, 3)
    assert mondays == [datetime(2026, 3, d, 10, 0) for d in (16, 23, 30)]
    assert Cron.parse("0 10 * * 1").times(START, 3) == mondays


def test_weekdays_ranges_steps_and_lists() -> None:
    cron = Cron.parse("30 9 * * mon-fri")
    assert [at.weekday() for at in cron.times(START, 6)] == [0, 1, 2, 3, 4, 0]
    assert Cron.parse("*/20 8-9 * * *").times(START, 4) == [
        datetime(2026, 3, 14, 9, m) for m in (0, 20, 40)
    ] + [datetime(2026, 3, 15, 8, 0)]
    assert Cron.parse("0 12 1,15 * *").times(START, 2) == [
        datetime(2026, 3, 15, 12, 0),
        datetime(2026, 4, 1, 12, 0),
    ]


def test_the_start_counts_and_seconds_round_up() -> None:
    assert Cron.parse("0 9 * * *").times(START, 1) == [START]
    late = START + timedelta(seconds=1)
    assert Cron.parse("0 9 * * *").times(late, 1) == [datetime(2026, 3, 15, 9, 0)]


def test_sunday_is_zero_or_seven_and_names_work_in_months() -> None:
    sundays = Cron.parse("0 8 * * 0").times(START, 2)
    assert sundays == Cron.parse("0 8 * * 7").times(START, 2)
    assert [at.weekday() for at in sundays] == [6, 6]
    assert Cron.parse("0 0 1 jan *").times(START, 1) == [datetime(2027, 1, 1, 0, 0)]


def test_day_of_month_or_weekday_when_both_are_restricted() -> None:
    # crontab(5): the 1st of the month, and every Monday.
    times = Cron.parse("0 10 1 * MON").times(START, 4)
    assert times == [datetime(2026, 3, d, 10) for d in (16, 23, 30)] + [datetime(2026, 4, 1, 10)]


def test_an_aware_start_is_matched_on_the_utc_clock() -> None:
    start = datetime(2026, 3, 14, 18, 0, tzinfo=UTC)
    assert Cron.parse("0 10 * * *").times(start, 1) == [datetime(2026, 3, 15, 10, tzinfo=UTC)]


def test_a_date_that_never_comes_gives_no_times() -> None:
    assert Cron.parse("0 0 30 2 *").times(START, 2) == []
    leap_days = Cron.parse("0 0 29 2 *").times(START, 5)
    assert [at.year for at in leap_days] == [2028, 2032, 2036]  # ten years at most


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("0 10 * *", "five fields"),
        ("0 10 * * * *", "five fields"),
        ("60 10 * * *", "the minute field: 60 is not within 0-59"),
        ("0 24 * * *", "the hour field: 24 is not within 0-23"),
        ("0 10 0 * *", "the day of month field"),
        ("0 10 * 13 *", "the month field"),
        ("0 10 * * 8", "the day of week field"),
        ("0 10 * * FUN", "the day of week field: 'FUN' is not a value"),
        ("*/0 10 * * *", "the step '0' must be at least 1"),
        ("0 17-9 * * *", "runs backwards"),
        ("0 10,,12 * * *", "the hour field"),
        ("@weekly", "five fields"),
    ],
)
def test_a_wrong_expression_names_the_field_and_says_why(expression: str, says: str) -> None:
    with pytest.raises(InvalidDefinition) as raised:
        Cron.parse(expression)
    assert raised.value.path == "repeat.cron"
    assert says in raised.value.message

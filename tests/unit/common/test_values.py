"""The value tests every condition language shares, and ISO 8601 durations."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from libs.common import values
from libs.common.values import (
    MISSING,
    DurationRules,
    InvalidDuration,
    compare,
    json_equal,
    lookup,
    number,
    parse_duration,
)

# Imported as a module: pytest would take a `test_value` in this namespace for a test.
check = values.test_value


def test_lookup_reads_a_key_or_a_dotted_path_into_nested_objects() -> None:
    properties = {"total": 120.5, "cart": {"items": 3, "owner": {"id": "u1"}}}
    assert lookup(properties, "total") == 120.5
    assert lookup(properties, "cart.items") == 3
    assert lookup(properties, "cart.owner.id") == "u1"
    assert lookup(properties, "cart") == {"items": 3, "owner": {"id": "u1"}}


def test_lookup_prefers_a_key_that_contains_dots() -> None:
    assert lookup({"a.b": 1, "a": {"b": 2}}, "a.b") == 1


@pytest.mark.parametrize("path", ["absent", "cart.absent", "total.cents", "cart.items.n", ""])
def test_lookup_of_nothing_is_missing(path: str) -> None:
    assert lookup({"total": 5, "cart": {"items": 3}}, path) is MISSING


def test_lookup_keeps_a_null_apart_from_an_absent_key() -> None:
    assert lookup({"coupon": None}, "coupon") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, Decimal(3)),
        (-7, Decimal(-7)),
        (0.1, Decimal("0.1")),
        (129.9, Decimal("129.9")),
        (10**30, Decimal(10**30)),
        (True, None),
        (False, None),
        ("5", None),
        (None, None),
        ([1], None),
    ],
)
def test_number_is_the_exact_decimal_of_a_json_number(value: Any, expected: Any) -> None:
    assert number(value) == expected
    assert (number(value) is None) == (expected is None)


@pytest.mark.parametrize(
    ("left", "right", "equal"),
    [
        (1, 1.0, True),
        (0.1, 0.1, True),
        (1, 2, False),
        (True, 1, False),
        (1, True, False),
        (False, 0, False),
        (True, True, True),
        (False, True, False),
        ("1", 1, False),
        ("tea", "tea", True),
        (None, None, True),
        (None, 0, False),
        ([1, 2.0], [1.0, 2], True),
        ([1, 2], [2, 1], False),
        ([1], [1, 1], False),
        ([True], [1], False),
        ({"a": 1, "b": [2.0]}, {"b": [2], "a": 1.0}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ({"a": True}, {"a": 1}, False),
        ([1], {"0": 1}, False),
    ],
)
def test_json_equal_has_jsonb_semantics(left: Any, right: Any, equal: bool) -> None:
    assert json_equal(left, right) is equal
    assert json_equal(right, left) is equal


@pytest.mark.parametrize(
    ("op", "left", "right", "holds"),
    [
        ("eq", Decimal(2), Decimal(2), True),
        ("eq", Decimal(2), Decimal(3), False),
        ("gt", 3, 2, True),
        ("gt", 2, 2, False),
        ("gte", 2, 2, True),
        ("gte", 1, 2, False),
        ("lt", 1, 2, True),
        ("lt", 2, 2, False),
        ("lte", 2, 2, True),
        ("lte", 3, 2, False),
        ("lt", "apple", "banana", True),
    ],
)
def test_compare_applies_the_operator(op: str, left: Any, right: Any, holds: bool) -> None:
    assert compare(op, left, right) is holds


@pytest.mark.parametrize("op", ["neq", "in", "contains", "exists", "GT", ""])
def test_compare_refuses_what_is_not_a_comparison(op: str) -> None:
    with pytest.raises(ValueError, match="unknown comparison"):
        compare(op, 1, 1)


@pytest.mark.parametrize(
    ("actual", "present"),
    [("x", True), (0, True), (False, True), ([], True), ({}, True), (None, False)],
)
def test_exists_holds_for_any_value_but_null(actual: Any, present: bool) -> None:
    assert check("exists", actual, None) is present
    assert check("exists", MISSING, None) is False


@pytest.mark.parametrize(
    ("op", "actual", "expected", "holds"),
    [
        ("eq", "premium", "premium", True),
        ("eq", "premium", "free", False),
        ("eq", 34, 34.0, True),
        ("eq", True, 1, False),
        ("eq", 1, True, False),
        ("eq", ["a", 1], ["a", 1.0], True),
        ("eq", MISSING, "premium", False),
        ("eq", None, None, False),
        ("neq", "premium", "free", True),
        ("neq", "premium", "premium", False),
        ("neq", True, 1, True),
        ("neq", MISSING, "premium", True),
        ("neq", None, "premium", True),
        ("in", "b", ["a", "b"], True),
        ("in", 2, [1.0, 2.0], True),
        ("in", True, [1, "true"], False),
        ("in", "c", ["a", "b"], False),
        ("in", MISSING, ["a"], False),
        ("contains", "Hangzhou", "zhou", True),
        ("contains", "Hangzhou", "Beijing", False),
        ("contains", "1234", 23, False),
        ("contains", ["x", "y"], "x", True),
        ("contains", [1, 2], 2.0, True),
        ("contains", [1, 2], True, False),
        ("contains", ["x"], "z", False),
        ("contains", {"x": 1}, "x", False),
        ("contains", 5, 5, False),
        ("contains", MISSING, "x", False),
    ],
)
def test_equality_membership_and_containment(
    op: str, actual: Any, expected: Any, holds: bool
) -> None:
    assert check(op, actual, expected) is holds


@pytest.mark.parametrize(
    ("op", "actual", "expected", "holds"),
    [
        ("gt", 129.9, 100, True),
        ("gt", 100, 100.0, False),
        ("gte", 100, 100.0, True),
        ("lt", 0.1, 0.2, True),
        ("lte", 3, 2, False),
        ("lte", 2, 2, True),
        ("gt", "b", "a", True),
        ("lt", "B", "a", True),  # code point order, as PostgreSQL's "C" collation
        ("gte", "5", 1, False),  # a string is not ordered against a number
        ("gte", 5, "1", False),  # nor a number against a string
        ("gt", True, 0, False),  # nor a boolean against anything
        ("gt", 1, False, False),
        ("gt", [5], 1, False),
        ("gt", None, 1, False),
        ("lt", MISSING, 1, False),
        ("gt", float("nan"), 1, False),  # a NaN orders with nothing
        ("lt", 1, float("nan"), False),
    ],
)
def test_orderings_compare_numbers_with_numbers_and_strings_with_strings(
    op: str, actual: Any, expected: Any, holds: bool
) -> None:
    assert check(op, actual, expected) is holds


@pytest.mark.parametrize(
    ("text", "duration"),
    [
        ("P30D", timedelta(days=30)),
        ("PT3S", timedelta(seconds=3)),
        ("P1W", timedelta(weeks=1)),
        ("PT1H30M", timedelta(hours=1, minutes=30)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("PT0.5S", timedelta(milliseconds=500)),
        ("P1W2DT3H4M5S", timedelta(days=9, hours=3, minutes=4, seconds=5)),
        ("PT36H", timedelta(hours=36)),
        ("PT90M", timedelta(minutes=90)),
        ("P0DT1S", timedelta(seconds=1)),
        ("P0000001D", timedelta(days=1)),
    ],
)
def test_durations_in_weeks_days_and_time(text: str, duration: timedelta) -> None:
    assert parse_duration(text) == duration


def test_a_timedelta_is_taken_as_it_is() -> None:
    assert parse_duration(timedelta(days=4000)) == timedelta(days=4000)


@pytest.mark.parametrize(
    "value",
    [
        *("", "P", "PT", "P1DT", "P1Y", "P1M", "PT1D", "P1H", "1D", "p1d", "P-1D", "P1D2W"),
        *("P1.5D", "PT1.S", "PT.5S", " P1D", "30 days", 5, 5.0, True, None, ["P1D"]),
    ],
)
def test_anything_else_is_malformed(value: Any) -> None:
    with pytest.raises(InvalidDuration) as raised:
        parse_duration(value, "window")
    assert raised.value.message == DurationRules().malformed


@pytest.mark.parametrize("text", ["P0D", "PT0S", "P0W0DT0H0M0S", "PT0.0000001S"])
def test_a_duration_must_be_longer_than_zero(text: str) -> None:
    with pytest.raises(InvalidDuration) as raised:
        parse_duration(text)
    assert raised.value.message == "a duration must be longer than zero"


def test_the_longest_duration_is_the_callers() -> None:
    rules = DurationRules(longest=timedelta(days=366), too_long="at most 366 days")
    assert parse_duration("P366D", rules=rules) == timedelta(days=366)
    assert parse_duration("P52W2D", rules=rules) == timedelta(days=366)
    with pytest.raises(InvalidDuration, match="at most 366 days"):
        parse_duration("P366DT1S", rules=rules)
    assert parse_duration("P367D") == timedelta(days=367)


@pytest.mark.parametrize("text", ["P99999999999W", "PT" + "9" * 400 + "S", "P1000000000D"])
def test_a_duration_beyond_timedelta_is_too_long_not_a_crash(text: str) -> None:
    with pytest.raises(InvalidDuration) as raised:
        parse_duration(text)
    assert raised.value.message == "a duration is too long"
    with pytest.raises(InvalidDuration, match=r"^at most a year$"):
        parse_duration(
            text, rules=DurationRules(longest=timedelta(days=365), too_long="at most a year")
        )


def test_a_caller_may_take_whole_seconds_only() -> None:
    whole = DurationRules(fractional_seconds=False, malformed="whole seconds only")
    assert parse_duration("PT2S", rules=whole) == timedelta(seconds=2)
    with pytest.raises(InvalidDuration, match="whole seconds only"):
        parse_duration("PT1.5S", rules=whole)
    assert parse_duration("PT1.5S") == timedelta(seconds=1.5)


def test_an_error_names_the_path_the_caller_gives() -> None:
    with pytest.raises(InvalidDuration) as raised:
        parse_duration("P1Y", "caps[0].window")
    assert raised.value.path == "caps[0].window"
    assert str(raised.value) == f"caps[0].window: {DurationRules().malformed}"
    assert isinstance(raised.value, ValueError)


def test_without_a_path_the_message_stands_alone() -> None:
    """For pydantic validators, which put the location in front themselves."""
    with pytest.raises(InvalidDuration) as raised:
        parse_duration("PT0S")
    assert str(raised.value) == "a duration must be longer than zero"


class _CallersError(ValueError):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path} -> {message}")
        self.path = path


@pytest.mark.parametrize("text", ["P1Y", "P0D", "P400D"])
def test_a_caller_raises_its_own_error_with_its_own_words(text: str) -> None:
    rules = DurationRules(
        longest=timedelta(days=366),
        malformed="bad",
        not_positive="empty",
        too_long="long",
        error=_CallersError,
    )
    with pytest.raises(_CallersError) as raised:
        parse_duration(text, "nodes.pause.duration", rules=rules)
    assert raised.value.path == "nodes.pause.duration"
    words = {"P1Y": "bad", "P0D": "empty", "P400D": "long"}[text]
    assert str(raised.value) == f"nodes.pause.duration -> {words}"

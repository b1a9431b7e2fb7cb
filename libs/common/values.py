"""JSON values as the condition languages test them, and ISO 8601 durations.

Segment rules, journey conditions and conversion filters all test a JSON value with an `op` and
a `value`, with JSON semantics as PostgreSQL's jsonb has them: `true` is not `1`, `1` is `1.0`.
Segment's SQL compiler writes the same tests in SQL, so the two must agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any, Final

MISSING: Final[Any] = object()
"""What `lookup` returns, and what a caller passes to `test_value`, when a key is absent."""


def lookup(properties: Mapping[str, Any], path: str) -> Any:
    """A property by name, or by dotted path into nested objects (`cart.total`); MISSING if none.

    A key that itself contains dots wins over the path it spells.
    """
    if path in properties:
        return properties[path]
    value: Any = properties
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return MISSING
        value = value[part]
    return value


def number(value: Any) -> Decimal | None:
    """A JSON number as an exact decimal (as PostgreSQL's numeric reads it); None otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return Decimal(value) if isinstance(value, int) else Decimal(repr(value))


def json_equal(left: Any, right: Any) -> bool:
    """Equality of two JSON values: `true` is not `1`, `1` is `1.0`, containers compare deeply."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    left_number, right_number = number(left), number(right)
    if left_number is not None or right_number is not None:
        return left_number == right_number
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(json_equal, left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    return bool(left == right)


def compare(op: str, left: Any, right: Any) -> bool:
    """`left <op> right` for `eq`, `gt`, `gte`, `lt` and `lte`, on values of one kind."""
    match op:
        case "eq":
            return bool(left == right)
        case "gt":
            return bool(left > right)
        case "gte":
            return bool(left >= right)
        case "lt":
            return bool(left < right)
        case "lte":
            return bool(left <= right)
    raise ValueError(f"unknown comparison {op!r}")


def test_value(op: str, actual: Any, expected: Any) -> bool:
    """One `op`/`value` test against a JSON value, MISSING when the key is absent.

    `exists` holds for a present, non-null value; `neq` holds for an absent one. `contains`
    looks for a substring in a string or an element in an array. The orderings compare a string
    with strings (code point order) and a number with numbers; nothing else is ordered.
    """
    present = actual is not MISSING and actual is not None
    if op == "exists":
        return present
    if op == "neq":
        return not test_value("eq", actual, expected)
    if not present:
        return False
    if op == "eq":
        return json_equal(actual, expected)
    if op == "in":
        return any(json_equal(actual, option) for option in expected)
    if op == "contains":
        return _contains(actual, expected)
    return _ordered(op, actual, expected)


def _ordered(op: str, actual: Any, expected: Any) -> bool:
    if isinstance(expected, str):
        return isinstance(actual, str) and compare(op, actual, expected)
    left, right = number(actual), number(expected)
    if left is None or right is None or left.is_nan() or right.is_nan():
        return False
    return compare(op, left, right)


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(actual, str):
        return isinstance(expected, str) and expected in actual
    if isinstance(actual, list):
        return any(json_equal(item, expected) for item in actual)
    return False


class InvalidDuration(ValueError):
    """A duration that cannot be used; `path` names where it was given ("" when the caller's
    framework adds the location itself, as pydantic does)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


@dataclass(frozen=True)
class DurationRules:
    """What one caller accepts beyond the shared syntax, and the words of each refusal.

    `error(path, message)` builds the exception raised: a caller whose errors already carry a
    path (journey's InvalidDefinition, dispatch's InvalidPolicy) passes its own class.
    """

    longest: timedelta | None = None
    fractional_seconds: bool = True
    malformed: str = "not an ISO 8601 duration (such as P7D, PT12H or PT30S)"
    not_positive: str = "a duration must be longer than zero"
    too_long: str = "a duration is too long"
    error: Callable[[str, str], Exception] = InvalidDuration


DURATIONS = DurationRules()

# Years and months have no fixed length, so durations are written in weeks, days and time.
# Something must follow P, and a digit must follow T.
_DURATION = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(value: Any, path: str = "", *, rules: DurationRules = DURATIONS) -> timedelta:
    """An ISO 8601 duration in weeks, days, hours, minutes and seconds (`P30D`, `PT12H`,
    `P1W2DT3H4M5S`, `PT0.5S`), longer than zero and at most `rules.longest`.

    A timedelta is taken as it is. Anything else wrong raises `rules.error(path, ...)` with the
    caller's words for what is wrong.
    """
    if isinstance(value, timedelta):
        return value
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None or (not rules.fractional_seconds and "." in (match["seconds"] or "")):
        raise rules.error(path, rules.malformed)
    parts = {name: float(amount) for name, amount in match.groupdict().items() if amount}
    try:
        duration = timedelta(**parts)
    except OverflowError:
        raise rules.error(path, rules.too_long) from None
    if duration <= timedelta(0):
        raise rules.error(path, rules.not_positive)
    if rules.longest is not None and duration > rules.longest:
        raise rules.error(path, rules.too_long)
    return duration

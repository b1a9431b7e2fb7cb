"""The limits every value a client sends keeps to: the first part beyond them, named by path."""

from __future__ import annotations

from typing import Any

import pytest

from libs.common.limits import (
    INT64_MAX,
    INT64_MIN,
    INT_TOO_LARGE,
    MAX_DEPTH,
    NUL_IN_KEY,
    NUL_IN_TEXT,
    TOO_DEEP,
    first_violation,
    loads,
)


def _nested(levels: int) -> Any:
    """`levels` objects and arrays, one inside the other."""
    value: Any = {}
    for level in range(levels - 1):
        value = [value] if level % 2 else {"a": value}
    return value


def test_values_within_the_limits_pass() -> None:
    fields = {
        "userId": "u1",
        "properties": {"n": INT64_MAX, "m": INT64_MIN, "x": 1.5, "ok": True, "deep": None},
        "context": _nested(MAX_DEPTH),
    }
    assert first_violation(fields) is None


@pytest.mark.parametrize(
    ("fields", "path", "reason"),
    [
        ({"userId": "u\x00"}, "userId", NUL_IN_TEXT),
        ({"event": "\x00"}, "event", NUL_IN_TEXT),
        ({"properties": {"a": {"b": [1, 2, 3, "x\x00"]}}}, "properties.a.b[3]", NUL_IN_TEXT),
        ({"traits": {"ok": 1, "na\x00me": "x"}}, "traits.na\x00me", NUL_IN_KEY),
        ({"prop\x00": 1}, "prop\x00", NUL_IN_KEY),
        ({"properties": {"n": INT64_MAX + 1}}, "properties.n", INT_TOO_LARGE),
        ({"properties": {"n": [INT64_MIN - 1]}}, "properties.n[0]", INT_TOO_LARGE),
        ({"properties": {"x": float("nan")}}, "properties.x", "is not a finite number"),
    ],
)
def test_the_first_part_beyond_the_limits_is_named(
    fields: dict[str, Any], path: str, reason: str
) -> None:
    violation = first_violation(fields)
    assert violation is not None
    assert (violation.path, violation.reason) == (path, reason)
    assert violation.message.startswith(path)


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 300, 1_000])
def test_nesting_beyond_the_limit_is_named_where_it_goes_too_deep(levels: int) -> None:
    violation = first_violation({"properties": _nested(levels)})
    assert violation is not None
    assert violation.reason == TOO_DEEP
    assert violation.path.startswith("properties")
    assert violation.path.count("[") + violation.path.count(".") == MAX_DEPTH


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b'{"n": 9223372036854775807}', 2**63 - 1),
        (b'{"n": 18446744073709551616}', 2**64),
        (b'{"n": -9223372036854775809}', -(2**63) - 1),
        (b'{"n": 1e19}', 1e19),
    ],
)
def test_loads_keeps_integers_exact_where_orjson_would_round_them(
    text: bytes, expected: object
) -> None:
    value = loads(text)["n"]
    assert value == expected and type(value) is type(expected)


def test_loads_of_a_long_digit_string_keeps_it_a_string() -> None:
    assert loads(b'{"id": "12345678901234567890"}') == {"id": "12345678901234567890"}

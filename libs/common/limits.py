"""What a value a client sends must keep to, so that every consumer can decode and store it.

Ingest accepts a call only when everything downstream can carry it unchanged: the Kafka message
it becomes, each consumer's decoder, PostgreSQL's text and jsonb, the REST answers that show it
again. So the limits are those of the weakest link, with room to spare:

- Nesting: at most `MAX_DEPTH` levels of objects and arrays in a field, counting the field's
  own object (`properties: {}` is one level). pydantic refuses to serialise past 255 levels and
  consumers' decoders give up sooner (the event sits a few levels deep in its envelope, and
  decoding recurses per level); 64 is well below all of them and far above any real SDK's
  context or properties.
- Text: no NUL (U+0000) in any string or object key. PostgreSQL stores no NUL in text, nor
  `\\u0000` in jsonb.
- Integers: within signed 64 bits. orjson writes no integer beyond 64 bits and reads one
  beyond unsigned 64 bits as a rounded float; PostgreSQL jsonb would keep more, but not every
  consumer would, so larger integers are refused rather than carried by some and not others.
  (Send such ids as strings.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

MAX_DEPTH: Final = 64
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

TOO_DEEP: Final = f"nests more than {MAX_DEPTH} levels of objects and arrays"
NUL_IN_TEXT: Final = "contains a NUL character (\\u0000), which cannot be stored"
NUL_IN_KEY: Final = "has a key containing a NUL character (\\u0000), which cannot be stored"
INT_TOO_LARGE: Final = f"is an integer outside {INT64_MIN}..{INT64_MAX} (send it as a string)"
NOT_FINITE: Final = "is not a finite number"

# 19 digits or more: an integer orjson may read as a rounded float (beyond unsigned 64 bits, or
# below -2**63). Most bodies have none, and pay only this search: every digit made "9" and
# every other byte ".", then one substring test (both in C; a regular expression took ~5 µs
# per call of a Segment batch, more than parsing it).
_DIGITS_AS_NINES = bytes(0x39 if 0x30 <= byte <= 0x39 else 0x2E for byte in range(256))
_NINETEEN_DIGITS = b"9" * 19


@dataclass(frozen=True)
class Violation:
    """The first part of a value beyond the limits: where (`properties.a.b[3]`) and why."""

    path: str
    reason: str

    @property
    def message(self) -> str:
        return f"{self.path} {self.reason}"


def loads(data: bytes | str) -> Any:
    """JSON read with orjson, except that an integer orjson would round to a float is kept
    exact, so that `first_violation` can refuse it; raises orjson.JSONDecodeError."""
    value = orjson.loads(data)
    raw = data.encode() if isinstance(data, str) else data
    if _NINETEEN_DIGITS not in raw.translate(_DIGITS_AS_NINES):
        return value
    try:
        return json.loads(raw)
    except RecursionError:
        # Deeper than Python's own parser goes, and so refused by its depth anyway.
        return value


def first_violation(fields: Mapping[str, Any]) -> Violation | None:
    """The first field (or part of one) of a JSON object beyond the limits, or None.

    Cheap where it can be: a string costs a substring test, an integer a comparison; only
    objects and arrays are walked.
    """
    for key, value in fields.items():
        if "\x00" in key:
            return Violation(_render([key]), NUL_IN_KEY)
        found = _check(value, 1)
        if found is not None:
            parts, reason = found
            parts.append(key)
            return Violation(_render(parts), reason)
    return None


def _check(value: Any, depth: int) -> tuple[list[str | int], str] | None:
    """Why `value` (a container at level `depth`) is beyond the limits, with the path to the
    part at fault innermost first; None when it is within them.

    This runs on every call ingest takes, so strings, integers, booleans and nulls inside an
    object or array are judged inline by their exact type, without a call per value.
    """
    kind = type(value)
    if kind is dict:
        if depth > MAX_DEPTH:
            return [], TOO_DEEP
        for key, item in value.items():
            if "\x00" in key:
                return [key], NUL_IN_KEY
            item_kind = type(item)
            if item_kind is str:
                if "\x00" in item:
                    return [key], NUL_IN_TEXT
            elif item_kind is int:
                if not INT64_MIN <= item <= INT64_MAX:
                    return [key], INT_TOO_LARGE
            elif item_kind is not bool and item is not None:
                found = _check(item, depth + 1)
                if found is not None:
                    found[0].append(key)
                    return found
        return None
    if kind is list:
        if depth > MAX_DEPTH:
            return [], TOO_DEEP
        for index, item in enumerate(value):
            item_kind = type(item)
            if item_kind is str:
                if "\x00" in item:
                    return [index], NUL_IN_TEXT
            elif item_kind is int:
                if not INT64_MIN <= item <= INT64_MAX:
                    return [index], INT_TOO_LARGE
            elif item_kind is not bool and item is not None:
                found = _check(item, depth + 1)
                if found is not None:
                    found[0].append(index)
                    return found
        return None
    return _scalar(value)


def _scalar(value: Any) -> tuple[list[str | int], str] | None:
    """Why a value that is not an object or array is beyond the limits, or None."""
    if isinstance(value, str):
        return ([], NUL_IN_TEXT) if "\x00" in value else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return None if INT64_MIN <= value <= INT64_MAX else ([], INT_TOO_LARGE)
    if isinstance(value, float):
        return None if math.isfinite(value) else ([], NOT_FINITE)
    return None


def _render(reversed_parts: list[str | int]) -> str:
    path = ""
    for part in reversed(reversed_parts):
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path

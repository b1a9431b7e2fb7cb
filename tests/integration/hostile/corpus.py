"""Bad messages for every consumed topic, and the DLQ letters they leave behind.

Each topic gets the same kinds of badness, built on the example event of a type the topic
carries (from schemas/events/<type>/v1.json): broken bytes, wrong JSON, missing and wrong
fields, missing headers, a 1 MB string, 10,000 levels of nesting, timestamps in year 9999 and
year 1, an unregistered type, and a registered type that no consumer of the topic accepts.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from libs.common import topics
from libs.common.events.envelope import CONTENT_TYPE, SPEC_VERSION, Headers, dataschema_uri

SCHEMAS: Final = Path(__file__).resolve().parents[3] / "schemas" / "events"
KIND_HEADER: Final = "hostile_kind"

# A type each topic carries, the base of its bad messages.
TOPIC_TYPES: Final = {
    topics.INGEST: "ingest.identify",
    topics.BEHAVIOR: "behavior.occurred",
    topics.PROFILE: "profile.updated",
    topics.SEGMENT: "segment.entered",
    topics.REQUESTS: "message.requested",
    topics.DELIVERIES: "message.rendered",
    topics.OUTCOMES: "message.sent",
    topics.ATTRIBUTION: "conversion.attributed",
}
_EXAMPLE_PROFILE: Final = "prf_01JPB6W3K8N2X4Q7R9T0V5Y1ZC"
_ID_FIELDS: Final = ("profile_id", "messageId", "message_id", "request_id")
_FAR_FUTURE: Final = "9999-12-31T23:59:59+00:00"
_ANCIENT: Final = "0001-01-01T00:00:00+00:00"
HUGE_STRING_BYTES: Final = 1_000_000
NESTING_LEVELS: Final = 10_000


@dataclass(frozen=True)
class BadMessage:
    """One message to put on a topic as it is, and what it is meant to be."""

    topic: str
    kind: str
    key: bytes
    value: bytes
    headers: Headers
    expected: str  # "dlq", or "ignored" by every consumer group of the topic


def example(event_type: str, profile_id: str) -> dict[str, Any]:
    """The first example of a type's schema, about `profile_id` instead of the example person."""
    text = (SCHEMAS / event_type / "v1.json").read_text()
    examples = json.loads(text.replace(_EXAMPLE_PROFILE, profile_id))["examples"]
    first: dict[str, Any] = examples[0]
    return first


def headers_for(
    event_type: str, event_id: str, *, time: str = "2025-03-14T09:26:53+00:00"
) -> Headers:
    return [
        ("ce_specversion", SPEC_VERSION.encode()),
        ("ce_id", event_id.encode()),
        ("ce_type", event_type.encode()),
        ("ce_source", b"hostile/tests"),
        ("ce_time", time.encode()),
        ("ce_dataschema", dataschema_uri(event_type, 1).encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]


def corpus(topic: str, foreign_type: str, profile_id: str) -> list[BadMessage]:
    """The bad messages of one topic, all keyed by `profile_id` so they share a partition, in
    the order they are to be sent: the last one is sure to be dead-lettered, so its letter
    says every consumer group has come past the others."""
    event_type = TOPIC_TYPES[topic]
    good = example(event_type, profile_id)
    id_field = next(name for name in _ID_FIELDS if name in good)
    key = profile_id.encode()
    made: list[BadMessage] = []

    def add(kind: str, value: bytes, headers: Headers, expected: str = "dlq") -> None:
        made.append(
            BadMessage(topic, kind, key, value, [*headers, (KIND_HEADER, kind.encode())], expected)
        )

    def typed(event: str = event_type, **time: str) -> Headers:
        return headers_for(event, f"hostile-{uuid.uuid4()}", **time)

    add(
        "foreign known type",
        _json(example(foreign_type, profile_id)),
        typed(foreign_type),
        "ignored",
    )
    add("year 9999 timestamps", _json(_times(good, _FAR_FUTURE)), typed(time=_FAR_FUTURE))
    add("year 1 timestamps", _json(_times(good, _ANCIENT)), typed(time=_ANCIENT))
    add("not JSON", b"{not json", typed())
    add("invalid UTF-8 value", b'{"' + id_field.encode() + b'": "\xff\xfe\xfd"}', typed())
    add("invalid UTF-8 header", _json(good), _replace(typed(), "ce_source", b"\xff\xfe"))
    add("JSON list", b"[1, 2, 3]", typed())
    add("JSON number", b"42", typed())
    add("missing required fields", b"{}", typed())
    add("wrong field types", _json({name: [value] for name, value in good.items()}), typed())
    add("no ce_id header", _json(good), _without(typed(), "ce_id"))
    add("no ce_type header", _json(good), _without(typed(), "ce_type"))
    add("1 MB string", _json({**good, id_field: "x" * HUGE_STRING_BYTES}), typed())
    deep = "[" * NESTING_LEVELS + "]" * NESTING_LEVELS
    nested = _json({**good, id_field: "__DEEP__"}).replace(b'"__DEEP__"', deep.encode())
    add("10,000 levels of nesting", nested, typed())
    unknown = [
        *_without(_without(typed(), "ce_type"), "ce_dataschema"),
        ("ce_type", b"hostile.unknown"),
        ("ce_dataschema", dataschema_uri("hostile.unknown", 1).encode()),
    ]
    add("unknown ce_type", _json(good), unknown)
    return made


def foreign_type(registered: Iterable[str], accepted: Iterable[frozenset[str]]) -> str:
    """A registered type that none of a topic's consumers accepts (they filter it out)."""
    taken = frozenset().union(*accepted)
    return next(t for t in sorted(registered) if t not in taken)


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


def _times(value: Any, when: str) -> Any:
    """`value` with every date-time string in it set to `when`."""
    return _walk(value, lambda text: when if _is_time(text) else text)


def _walk(value: Any, change: Callable[[str], str]) -> Any:
    if isinstance(value, dict):
        return {key: _walk(item, change) for key, item in value.items()}
    if isinstance(value, list):
        return [_walk(item, change) for item in value]
    return change(value) if isinstance(value, str) else value


def _is_time(text: str) -> bool:
    return len(text) >= 20 and text[4] == "-" and text[10] == "T" and text[:4].isdigit()


def _without(headers: Headers, name: str) -> Headers:
    return [(key, value) for key, value in headers if key != name]


def _replace(headers: Headers, name: str, value: bytes) -> Headers:
    return [(key, value if key == name else old) for key, old in headers]

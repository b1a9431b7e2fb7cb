"""The CloudEvents envelope, the registry of event types, and their Kafka binary-mode codec."""

from __future__ import annotations

import functools
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from libs.common.events.fields import plausible_event_time

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
_DATASCHEMA_PREFIX = "urn:closeloop:schema:"
_DATASCHEMA = re.compile(
    r"^urn:closeloop:schema:(?P<type>[a-z_]+\.[a-z_]+):v(?P<version>[1-9][0-9]*)$"
)

Headers = list[tuple[str, bytes]]
_random = random.Random()


class EventData(BaseModel):
    """The `data` of one event type at one version.

    Subclasses set `event_type`, `event_version` and `topic`; defining one registers it. A
    version only ever changes compatibly (new optional fields); anything else is a new class
    with the next version. Unknown fields are ignored so a consumer tolerates a producer that
    is one compatible change ahead.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_type: ClassVar[str]
    event_version: ClassVar[int] = 1
    topic: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "event_type" in cls.__dict__:
            registry.register(cls)


D = TypeVar("D", bound=EventData)


class EventRegistry:
    """Maps (type, version) to the model that validates that event's data."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, int], type[EventData]] = {}

    def register(self, model: type[EventData]) -> None:
        key = (model.event_type, model.event_version)
        existing = self._models.get(key)
        if existing is not None and existing.__qualname__ != model.__qualname__:
            raise ValueError(f"{key} is already registered by {existing.__qualname__}")
        self._models[key] = model

    def model_for(self, event_type: str, version: int) -> type[EventData]:
        try:
            return self._models[(event_type, version)]
        except KeyError:
            raise EventDecodeError(f"unknown event type {event_type!r} version {version}") from None

    def all(self) -> list[type[EventData]]:
        return [self._models[key] for key in sorted(self._models)]


registry = EventRegistry()


class EventDecodeError(ValueError):
    """A message on a topic is not a valid Closeloop event; the reason says why."""


def dataschema_uri(event_type: str, version: int) -> str:
    return f"{_DATASCHEMA_PREFIX}{event_type}:v{version}"


def new_event_id() -> str:
    """A version-7 UUID (RFC 9562): the millisecond it was made, then 74 random bits.

    Ids made later sort later, so an inbox's primary key, which is the id, grows at its right
    edge instead of at random pages (decision 0008). Ids need to be unique, not secret: the
    random bits come from a PRNG, no syscall per id. The text is `str(uuid.UUID(int=...))`.
    """
    milliseconds = time.time_ns() // 1_000_000
    bits = milliseconds << 80 | _random.getrandbits(80) & _UUID7_KEEP | _UUID7_SET
    digits = f"{bits:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


# Of the 80 bits after the time: the version (7) and the variant (RFC 4122) bits.
_UUID7_KEEP = ~((0xF << 76) | (0x3 << 62)) & (2**80 - 1)
_UUID7_SET = (7 << 76) | (0x2 << 62)


@dataclass(frozen=True, slots=True, init=False)
class Event(Generic[D]):
    """One CloudEvent: the attributes travel as Kafka headers, `data` as the JSON value.

    `key` is the canonical profile id (the anonymous or user id before resolution); it is the
    Kafka message key, so every event about one person lands on one partition, in order.
    Without an `id` it gets a new one; without a `time`, now.
    """

    data: D
    key: str
    source: str
    id: str
    time: datetime
    traceparent: str | None

    def __init__(
        self,
        data: D,
        key: str,
        source: str,
        id: str | None = None,
        time: datetime | None = None,
        traceparent: str | None = None,
    ) -> None:
        # Each field set through its slot: the frozen dataclass's own __init__ goes through
        # object.__setattr__ per field (1.0 µs an event; 0.66 this way), and every event
        # decoded or emitted is made here.
        _set_data(self, data)
        _set_key(self, key)
        _set_source(self, source)
        _set_id(self, new_event_id() if id is None else id)
        _set_time(self, datetime.now(UTC) if time is None else time)
        _set_traceparent(self, traceparent)

    @property
    def type(self) -> str:
        return self.data.event_type

    @property
    def version(self) -> int:
        return self.data.event_version

    @property
    def topic(self) -> str:
        return self.data.topic

    def headers(self) -> Headers:
        return event_headers(self.data, self.id, self.source, self.time, self.traceparent)

    def value(self) -> bytes:
        return event_value(self.data)


_set_data, _set_key, _set_source, _set_id, _set_time, _set_traceparent = (
    Event.__dict__[name].__set__ for name in ("data", "key", "source", "id", "time", "traceparent")
)


def event_headers(
    data: EventData,
    event_id: str,
    source: str,
    time: datetime,
    traceparent: str | None = None,
) -> Headers:
    """The CloudEvents attributes of an event as Kafka headers, without building the `Event`:
    ingest encodes each call it accepts straight into a message."""
    return attribute_headers(
        data.event_type, data.event_version, event_id, source, time.isoformat(), traceparent
    )


def attribute_headers(
    event_type: str,
    version: int,
    event_id: str,
    source: str,
    time_text: str,
    traceparent: str | None = None,
) -> Headers:
    """The Kafka headers of an event's CloudEvents attributes, from those attributes as text."""
    type_header, source_header, dataschema_header = _shared_headers(event_type, version, source)
    headers: Headers = [
        _SPEC_VERSION_HEADER,
        ("ce_id", event_id.encode()),
        type_header,
        source_header,
        ("ce_time", time_text.encode()),
        dataschema_header,
        _CONTENT_TYPE_HEADER,
    ]
    if traceparent:
        headers.append(("traceparent", traceparent.encode()))
    return headers


def event_value(data: EventData) -> bytes:
    """The JSON value of an event's data (absent optional fields left out)."""
    return data.__pydantic_serializer__.to_json(data, exclude_none=True)


_SPEC_VERSION_RAW = SPEC_VERSION.encode()
_SPEC_VERSION_HEADER = ("ce_specversion", _SPEC_VERSION_RAW)
_CONTENT_TYPE_HEADER = ("content-type", CONTENT_TYPE.encode())


_SharedHeaders = tuple[tuple[str, bytes], tuple[str, bytes], tuple[str, bytes]]


@functools.lru_cache(maxsize=1024)
def _shared_headers(event_type: str, version: int, source: str) -> _SharedHeaders:
    """The headers every event of one type and version from one source carries, encoded once:
    a process publishes a handful of these, and encoding them per event showed in profiles."""
    return (
        ("ce_type", event_type.encode()),
        ("ce_source", source.encode()),
        ("ce_dataschema", dataschema_uri(event_type, version).encode()),
    )


def encode(event: Event[Any]) -> tuple[bytes, bytes, Headers]:
    """The Kafka (key, value, headers) of an event in CloudEvents binary mode."""
    return event.key.encode(), event.value(), event.headers()


def decode(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
) -> Event[Any]:
    """The event a Kafka message carries, validated against its registered model.

    Raises EventDecodeError, naming the attribute or field that is wrong.
    """
    attributes = dict(headers)  # decoded one by one, only those read
    event_id = _text(attributes, "ce_id")
    type_header = _present(attributes, "ce_type")
    source = _text(attributes, "ce_source")
    if attributes.get("ce_specversion") != _SPEC_VERSION_RAW:
        raise EventDecodeError(f"ce_specversion must be {SPEC_VERSION!r}")
    model = _model_of(type_header, attributes.get("ce_dataschema", b""))
    if value is None:
        raise EventDecodeError("message has no value")
    try:
        data = model.model_validate_json(value)
    except ValidationError as error:
        raise EventDecodeError(_describe(error)) from None
    traceparent = attributes.get("traceparent")
    return Event(
        data=data,
        key=key.decode("utf-8", errors="replace") if key else "",
        source=source,
        id=event_id,
        time=_time(_text(attributes, "ce_time")),
        traceparent=_decoded("traceparent", traceparent) if traceparent else None,
    )


def _present(attributes: dict[str, bytes], name: str) -> bytes:
    value = attributes.get(name)
    if not value:
        raise EventDecodeError(f"missing header {name!r}")
    return value


def _text(attributes: dict[str, bytes], name: str) -> str:
    return _decoded(name, _present(attributes, name))


def _decoded(name: str, value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise EventDecodeError(f"header {name!r} is not UTF-8") from None


@functools.lru_cache(maxsize=1024)
def _model_of(type_header: bytes, dataschema_header: bytes) -> type[EventData]:
    """The registered model a ce_type and ce_dataschema name: a topic carries a handful of
    pairs, so each is checked once (an invalid pair raises, and is not remembered)."""
    event_type = _decoded("ce_type", type_header)
    dataschema = _decoded("ce_dataschema", dataschema_header) if dataschema_header else ""
    parsed = _parsed_dataschema(dataschema) if len(dataschema) < 256 else None
    if parsed is None:
        raise EventDecodeError(f"ce_dataschema must look like {dataschema_uri('noun.verb', 1)!r}")
    if parsed[0] != event_type:
        raise EventDecodeError("ce_dataschema names another type than ce_type")
    return registry.model_for(event_type, parsed[1])


@functools.lru_cache(maxsize=1024)
def _parsed_dataschema(dataschema: str) -> tuple[str, int] | None:
    """(type, version) of a dataschema URI: a topic carries a handful, so they are parsed once."""
    match = _DATASCHEMA.match(dataschema)
    return None if match is None else (match["type"], int(match["version"]))


def _time(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise EventDecodeError("ce_time is not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise EventDecodeError("ce_time has no time zone")
    try:
        return plausible_event_time(parsed)
    except ValueError as error:
        raise EventDecodeError(f"ce_time: {error}") from None


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "data"
    return f"data.{where}: {first['msg']}" if where != "data" else f"data: {first['msg']}"

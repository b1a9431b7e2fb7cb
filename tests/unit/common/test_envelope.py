"""The CloudEvents envelope: binary-mode headers, the profile id as key, and decode's refusals."""

from __future__ import annotations

import dataclasses
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from libs.common.events import (
    BehaviorOccurred,
    Event,
    EventDecodeError,
    IngestTrack,
    decode,
    encode,
)
from libs.common.events.catalog import CLOUDEVENT_HEADERS
from libs.common.events.envelope import Headers, new_event_id

_PROFILE = "prf_01JPB6W3K8N2X4Q7R9T0V5Y1ZC"
_BINARY_MODE_HEADERS = {
    "ce_specversion",
    "ce_id",
    "ce_type",
    "ce_source",
    "ce_time",
    "ce_dataschema",
    "content-type",
}


def _behavior(**changes: Any) -> BehaviorOccurred:
    fields: dict[str, Any] = {
        "profile_id": _PROFILE,
        "event": "order_completed",
        "kind": "track",
        "occurred_at": datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC),
        "received_at": datetime(2025, 3, 14, 9, 26, 54, tzinfo=UTC),
        "message_id": "ajs-next-1f0c7a3e6b2d4c9e8a5f",
        **changes,
    }
    return BehaviorOccurred(**fields)


def _track(**ids: str) -> IngestTrack:
    return IngestTrack(
        message_id="ajs-1",
        source_id="src_web",
        event="order_completed",
        timestamp=datetime(2025, 3, 14, tzinfo=UTC),
        received_at=datetime(2025, 3, 14, tzinfo=UTC),
        **ids,
    )


def _event(**changes: Any) -> Event[BehaviorOccurred]:
    data = _behavior()
    return Event(data=data, key=data.profile_id, source="profile", **changes)


def _without(headers: Headers, name: str) -> Headers:
    return [(key, value) for key, value in headers if key != name]


def _replacing(headers: Headers, name: str, value: bytes) -> Headers:
    return [*_without(headers, name), (name, value)]


def test_headers_are_the_cloudevents_binary_mode_names() -> None:
    _, _, headers = encode(_event())
    assert {name for name, _ in headers} == _BINARY_MODE_HEADERS


def test_traceparent_travels_as_a_header_when_the_event_has_one() -> None:
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    _, _, headers = encode(_event(traceparent=trace))
    assert ("traceparent", trace.encode()) in headers


def test_the_catalogue_documents_exactly_the_headers_encode_writes() -> None:
    _, _, headers = encode(
        _event(traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    )
    assert {header.name for header in CLOUDEVENT_HEADERS} == {name for name, _ in headers}


def test_header_values_name_the_type_version_and_schema() -> None:
    event = _event(id="5b0f7c5e-2f6a-4d57-9a0b-8b0c1d2e3f40")
    headers = dict(encode(event)[2])
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_id"] == b"5b0f7c5e-2f6a-4d57-9a0b-8b0c1d2e3f40"
    assert headers["ce_type"] == b"behavior.occurred"
    assert headers["ce_source"] == b"profile"
    assert headers["ce_dataschema"] == b"urn:closeloop:schema:behavior.occurred:v1"
    assert headers["content-type"] == b"application/json"


def test_key_is_the_profile_id() -> None:
    key, _, _ = encode(_event())
    assert key == _PROFILE.encode()
    assert decode(*encode(_event())).key == _PROFILE


def test_value_is_the_json_data_without_absent_fields() -> None:
    _, value, _ = encode(_event())
    data = orjson.loads(value)
    assert data["profile_id"] == _PROFILE
    assert "user_id" not in data


def test_ingest_events_carry_segment_names_on_the_wire() -> None:
    track = _track(user_id="u_1")
    _, value, headers = encode(Event(data=track, key="u_1", source="ingest", id="ajs-1"))
    assert set(orjson.loads(value)) >= {"messageId", "sourceId", "userId", "receivedAt"}
    assert decode(b"u_1", value, headers).data == track


def test_decode_returns_the_event_that_was_encoded() -> None:
    event = _event(traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    assert decode(*encode(event)) == event


@pytest.mark.parametrize("header", ["ce_id", "ce_type", "ce_source", "ce_time"])
def test_decode_rejects_a_message_missing_a_required_header(header: str) -> None:
    key, value, headers = encode(_event())
    with pytest.raises(EventDecodeError, match=header):
        decode(key, value, _without(headers, header))


def test_decode_names_the_first_missing_attribute_of_a_bare_message() -> None:
    """The attributes are checked in the order the spec lists them: id, type, source."""
    key, value, _ = encode(_event())
    with pytest.raises(EventDecodeError, match="missing header 'ce_source'"):
        decode(key, value, [("ce_id", b"broken-1"), ("ce_type", b"behavior.occurred")])


def test_decode_rejects_another_cloudevents_version() -> None:
    key, value, headers = encode(_event())
    with pytest.raises(EventDecodeError, match="ce_specversion"):
        decode(key, value, _replacing(headers, "ce_specversion", b"0.3"))


def test_decode_rejects_an_unknown_type() -> None:
    key, value, headers = encode(_event())
    headers = _replacing(headers, "ce_type", b"behavior.imagined")
    headers = _replacing(headers, "ce_dataschema", b"urn:closeloop:schema:behavior.imagined:v1")
    with pytest.raises(EventDecodeError, match=r"behavior\.imagined"):
        decode(key, value, headers)


def test_decode_rejects_an_unknown_version() -> None:
    key, value, headers = encode(_event())
    headers = _replacing(headers, "ce_dataschema", b"urn:closeloop:schema:behavior.occurred:v9")
    with pytest.raises(EventDecodeError, match="version 9"):
        decode(key, value, headers)


@pytest.mark.parametrize(
    "dataschema",
    [
        b"https://example.com/behavior.occurred.json",
        b"urn:closeloop:schema:behavior.occurred",
        b"urn:closeloop:schema:segment.entered:v1",
    ],
)
def test_decode_rejects_a_wrong_dataschema(dataschema: bytes) -> None:
    key, value, headers = encode(_event())
    with pytest.raises(EventDecodeError, match="ce_dataschema"):
        decode(key, value, _replacing(headers, "ce_dataschema", dataschema))


def test_decode_rejects_a_missing_dataschema() -> None:
    key, value, headers = encode(_event())
    with pytest.raises(EventDecodeError, match="ce_dataschema"):
        decode(key, value, _without(headers, "ce_dataschema"))


def test_decode_rejects_a_time_without_a_time_zone() -> None:
    key, value, headers = encode(_event())
    with pytest.raises(EventDecodeError, match="ce_time"):
        decode(key, value, _replacing(headers, "ce_time", b"2025-03-14T09:26:53"))


def test_decode_rejects_invalid_json() -> None:
    key, _, headers = encode(_event())
    with pytest.raises(EventDecodeError, match="data: Invalid JSON"):
        decode(key, b'{"profile_id": ', headers)


def test_decode_rejects_a_message_without_a_value() -> None:
    key, _, headers = encode(_event())
    with pytest.raises(EventDecodeError, match="no value"):
        decode(key, None, headers)


def test_decode_names_a_missing_field() -> None:
    key, value, headers = encode(_event())
    data = orjson.loads(value)
    del data["occurred_at"]
    with pytest.raises(EventDecodeError, match=r"data\.occurred_at: Field required"):
        decode(key, orjson.dumps(data), headers)


def test_decode_names_an_invalid_field() -> None:
    key, value, headers = encode(_event())
    data = {**orjson.loads(value), "kind": "alias"}
    with pytest.raises(EventDecodeError, match=r"data\.kind"):
        decode(key, orjson.dumps(data), headers)


def test_decode_names_a_segment_field_by_its_segment_name() -> None:
    key, value, headers = encode(Event(data=_track(anonymous_id="a_1"), key="a_1", source="ingest"))
    data = {**orjson.loads(value), "receivedAt": "yesterday"}
    with pytest.raises(EventDecodeError, match=r"data\.receivedAt"):
        decode(key, orjson.dumps(data), headers)


def test_decode_rejects_a_segment_call_without_any_user_id() -> None:
    key, value, headers = encode(Event(data=_track(anonymous_id="a_1"), key="a_1", source="ingest"))
    data = orjson.loads(value)
    del data["anonymousId"]
    with pytest.raises(EventDecodeError, match="userId or anonymousId"):
        decode(key, orjson.dumps(data), headers)


def test_an_event_made_without_id_or_time_gets_a_new_id_and_now() -> None:
    before = datetime.now(UTC)
    first, second = _event(), _event()
    assert first.id != second.id
    assert before <= first.time <= datetime.now(UTC)
    assert first.traceparent is None


def test_event_ids_are_version_7_uuids_of_the_millisecond_they_were_made() -> None:
    before_ms = time.time_ns() // 1_000_000
    made = uuid.UUID(new_event_id())
    after_ms = time.time_ns() // 1_000_000
    assert (made.version, made.variant) == (7, uuid.RFC_4122)
    assert before_ms <= made.int >> 80 <= after_ms
    assert str(made) == str(made).lower()


def test_event_ids_made_in_later_milliseconds_sort_later() -> None:
    ids = [new_event_id()]
    deadline = time.monotonic() + 5.0
    while uuid.UUID(ids[-1]).int >> 80 == uuid.UUID(ids[0]).int >> 80:
        assert time.monotonic() < deadline, "the clock did not move"
        ids.append(new_event_id())
    assert ids[0] < ids[-1]
    assert len({*ids}) == len(ids)


def test_an_event_is_immutable_and_replace_keeps_what_it_does_not_change() -> None:
    event = _event(id="evt-1", traceparent="00-abc-def-01")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.key = "someone else"  # type: ignore[misc]
    moved = dataclasses.replace(event, key="prf_other")
    assert (moved.key, moved.id, moved.time, moved.traceparent, moved.data) == (
        "prf_other",
        "evt-1",
        event.time,
        "00-abc-def-01",
        event.data,
    )
    assert moved == dataclasses.replace(moved) and moved != event

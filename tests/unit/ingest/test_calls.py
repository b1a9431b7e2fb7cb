"""Segment calls become ingest events, or are rejected naming the field at fault."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from libs.common.bus import Message
from libs.common.events import Event, IngestIdentify, IngestTrack, decode
from services.ingest.calls import (
    SOURCE,
    CallRejected,
    Receipt,
    accept_batch,
    call_kind,
    corrected_timestamp,
    to_message,
)

RECEIVED = datetime(2025, 3, 14, 9, 26, 54, tzinfo=UTC)
RECEIPT = Receipt("src_web", RECEIVED)


def _decoded(message: Message) -> Event[Any]:
    """The event a consumer reads from the message: what ingest put on the wire."""
    event = decode(message.key, message.value, message.headers)
    assert (message.topic, message.event_type) == (event.topic, event.type)
    return event


def to_event(kind: str, call: Any, receipt: Receipt) -> Event[Any]:
    return _decoded(to_message(kind, call, receipt))


def _rejected(kind: str, call: Any, receipt: Receipt = RECEIPT) -> CallRejected:
    with pytest.raises(CallRejected) as raised:
        to_event(kind, call, receipt)
    return raised.value


def test_skew_correction_shifts_timestamp_by_the_clients_clock_error() -> None:
    # The client's clock runs 10 minutes behind: it sent at 09:16:54 by its clock.
    sent_at = RECEIVED - timedelta(minutes=10)
    timestamp = sent_at - timedelta(seconds=3)
    assert corrected_timestamp(timestamp, sent_at, RECEIVED) == RECEIVED - timedelta(seconds=3)


def test_without_sent_at_the_timestamp_is_kept() -> None:
    timestamp = RECEIVED - timedelta(hours=1)
    assert corrected_timestamp(timestamp, None, RECEIVED) == timestamp


def test_track_call_becomes_an_event_keyed_by_user_with_message_id_as_event_id() -> None:
    call = {
        "userId": "u_1",
        "anonymousId": "anon_1",
        "messageId": "msg-1",
        "event": "order_completed",
        "properties": {"revenue": 129.9},
        "timestamp": "2025-03-14T09:16:50Z",
        "sentAt": "2025-03-14T09:16:54Z",
    }
    event = to_event("track", call, RECEIPT)
    assert isinstance(event.data, IngestTrack)
    assert (event.id, event.key, event.source) == ("msg-1", "u_1", SOURCE)
    assert event.data.timestamp == RECEIVED - timedelta(seconds=4)
    assert event.data.source_id == "src_web"
    assert event.data.received_at == RECEIVED
    assert event.data.properties == {"revenue": 129.9}


def test_rudderstacks_original_timestamp_is_the_calls_time_skew_corrected() -> None:
    call = {
        "userId": "u_1",
        "event": "order_completed",
        "originalTimestamp": "2025-03-14T09:16:50Z",
        "sentAt": "2025-03-14T09:16:54Z",
        "channel": "web",
    }
    event = to_event("track", call, RECEIPT)
    assert event.data.timestamp == RECEIVED - timedelta(seconds=4)


def test_a_call_in_a_trace_carries_its_traceparent() -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    receipt = Receipt("src_web", RECEIVED, traceparent=traceparent)
    assert to_event("track", {"userId": "u_1", "event": "x"}, receipt).traceparent == traceparent
    assert to_event("track", {"userId": "u_1", "event": "x"}, RECEIPT).traceparent is None


def test_anonymous_call_is_keyed_by_anonymous_id_and_gets_a_message_id() -> None:
    event = to_event("identify", {"anonymousId": "anon_1", "traits": {"plan": "pro"}}, RECEIPT)
    assert isinstance(event.data, IngestIdentify)
    assert event.key == "anon_1"
    assert event.id and event.id == event.data.message_id
    assert event.data.timestamp == RECEIVED


def test_numeric_ids_are_taken_as_strings_and_naive_times_as_utc() -> None:
    event = to_event(
        "track", {"userId": 42, "event": "e", "timestamp": "2025-03-14T09:00:00"}, RECEIPT
    )
    assert event.key == "42"
    assert event.data.timestamp == datetime(2025, 3, 14, 9, tzinfo=UTC)


def test_client_cannot_choose_its_source_or_receipt_time() -> None:
    call = {
        "userId": "u",
        "event": "e",
        "sourceId": "src_other",
        "receivedAt": "2000-01-01T00:00:00Z",
    }
    event = to_event("track", call, RECEIPT)
    assert (event.data.source_id, event.data.received_at) == ("src_web", RECEIVED)


@pytest.mark.parametrize(
    ("kind", "call", "field"),
    [
        ("track", {"event": "e"}, "userId"),
        ("track", {"userId": "u"}, "event"),
        ("track", {"userId": "u", "event": ""}, "event"),
        ("track", {"userId": "u", "event": "e", "properties": [1]}, "properties"),
        ("track", {"userId": "u", "event": "e", "timestamp": "yesterday"}, "timestamp"),
        ("track", {"userId": "u", "event": "e", "sentAt": 5}, "sentAt"),
        ("identify", {"userId": ["u"]}, "userId"),
        ("identify", {"userId": "u", "messageId": {"id": 1}}, "messageId"),
        ("group", {"userId": "u"}, "groupId"),
        ("alias", {"anonymousId": "a", "previousId": "p"}, "userId"),
        ("page", {"userId": "u", "context": "web"}, "context"),
        ("track", [1, 2], None),
    ],
)
def test_malformed_call_is_rejected_naming_the_field(
    kind: str, call: Any, field: str | None
) -> None:
    assert _rejected(kind, call).field == field


def test_batch_rejects_bad_calls_and_keeps_the_good_ones() -> None:
    calls: list[object] = [
        {"type": "track", "userId": "u", "event": "a"},
        {"type": "track", "userId": "u"},
        {"type": "nap", "userId": "u"},
        "not a call",
        {"type": "identify", "userId": "u", "traits": {"bio": "x" * 400}},
        {"type": "page", "anonymousId": "a"},
    ]
    messages, rejections = accept_batch(calls, RECEIPT, max_event_bytes=400)
    assert [_decoded(message).type for message in messages] == ["ingest.track", "ingest.page"]
    assert [(r.index, r.field) for r in rejections] == [
        (1, "event"),
        (2, "type"),
        (3, None),
        (4, None),
    ]
    assert "larger than 400 bytes" in rejections[3].reason


def test_batch_context_is_merged_under_each_calls_own() -> None:
    receipt = Receipt(
        "src_web",
        RECEIVED,
        sent_at="2025-03-14T09:26:50Z",
        context={"library": {"name": "analytics-python"}, "ip": "203.0.113.1"},
    )
    call = {
        "type": "track",
        "userId": "u",
        "event": "e",
        "timestamp": "2025-03-14T09:26:49Z",
        "context": {"ip": "198.51.100.7"},
    }
    (message,), _ = accept_batch([call], receipt, max_event_bytes=1000)
    event = _decoded(message)
    assert event.data.context == {"library": {"name": "analytics-python"}, "ip": "198.51.100.7"}
    assert event.data.timestamp == RECEIVED - timedelta(seconds=1)


@pytest.mark.parametrize("kind", [[], {}, 3, None, "purchase"])
def test_a_type_that_is_not_a_known_call_name_is_rejected(kind: Any) -> None:
    with pytest.raises(CallRejected) as raised:
        call_kind({"type": kind})
    assert raised.value.field == "type"


def test_identify_takes_its_traits_from_context_when_it_has_none() -> None:
    # As rudder-sdk-python sends an identify: the traits only in the context.
    call = {"userId": "u", "context": {"traits": {"email": "li.wei@example.com"}}}
    event = to_event("identify", call, RECEIPT)
    assert event.data.traits == {"email": "li.wei@example.com"}
    assert event.data.context == {"traits": {"email": "li.wei@example.com"}}


def test_identify_traits_win_over_context_traits_of_the_same_name() -> None:
    call = {
        "userId": "u",
        "traits": {"plan": "pro"},
        "context": {"traits": {"plan": "free", "email": "li.wei@example.com"}},
    }
    event = to_event("identify", call, RECEIPT)
    assert event.data.traits == {"plan": "pro", "email": "li.wei@example.com"}


def test_group_traits_are_not_taken_from_the_users_context_traits() -> None:
    call = {"userId": "u", "groupId": "org_1", "context": {"traits": {"email": "a@example.com"}}}
    assert to_event("group", call, RECEIPT).data.traits == {}


def test_identify_with_traits_that_are_not_an_object_is_rejected_naming_traits() -> None:
    call = {"userId": "u", "traits": "vip", "context": {"traits": {"plan": "pro"}}}
    assert _rejected("identify", call).field == "traits"

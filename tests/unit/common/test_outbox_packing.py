"""An outbox row packs a batch's events and unpacks to the very messages `encode` makes."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from libs.common.bus.outbox import RECORD_SEPARATOR, pack_messages, unpack_messages
from libs.common.events import BehaviorOccurred, Event, decode, encode
from libs.common.events.profile import ProfileChange, ProfileUpdated


def _events() -> list[Event[BehaviorOccurred] | Event[ProfileUpdated]]:
    now = datetime.now(UTC)
    behaviour = BehaviorOccurred(
        profile_id="prf_1",
        event="note_written",
        kind="track",
        # Control characters, the separator among them, reach the JSON escaped.
        properties={"text": "a\x1eb\x00c\n", "quote": '"', "emoji": "茶 ☕"},
        occurred_at=now,
        received_at=now,
        message_id="m-1",
    )
    updated = ProfileUpdated(
        profile_id="prf_2",
        changes=[ProfileChange(field="traits.plan", after="premium")],
        occurred_at=now,
    )
    return [
        Event(data=behaviour, key="prf_1", source="closeloop/tests", traceparent="00-ab-cd-01"),
        Event(data=updated, key="prf_2", source="closeloop/profile"),
        Event(data=behaviour, key="prf_1", source="closeloop/tests", time=now),
    ]


def test_unpacked_messages_are_what_encode_makes_in_order() -> None:
    events = _events()
    messages = unpack_messages(pack_messages(events))
    expected = []
    for event in events:
        key, value, headers = encode(event)
        expected.append((event.topic, key, value, headers, event.type))
    assert [(m.topic, m.key, m.value, m.headers, m.event_type) for m in messages] == expected
    assert [decode(m.key, m.value, m.headers) for m in messages] == events


def test_a_value_holding_the_separator_character_stays_one_value() -> None:
    packed = pack_messages(_events())
    assert packed.count(RECORD_SEPARATOR) == 1 + len(_events())
    assert b"\\u001e" in (unpack_messages(packed)[0].value or b"")


def test_rows_packed_as_json_before_are_still_unpacked() -> None:
    events = _events()
    old_row = orjson.dumps(
        [
            (
                event.topic,
                event.key,
                event.type,
                {name: value.decode() for name, value in event.headers()},
                event.value().decode(),
            )
            for event in events
        ]
    )
    assert [decode(m.key, m.value, m.headers) for m in unpack_messages(old_row)] == events

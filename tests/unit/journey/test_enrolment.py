"""Entering current members: each one's turn, the throttle, the lookahead; broadcasts as
journeys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.journey.broadcast import (
    Broadcast,
    broadcast_field,
    iso_duration,
    parse_best_time_within,
    parse_repeat,
)
from services.journey.conditions import InvalidDefinition
from services.journey.cron import Cron
from services.journey.enrolment import Enrolment, Repeat, first_local_instant, local_instant
from services.journey.graph import Journey
from tests.unit.journey.fixtures import welcome

NOW = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def _fixed(per_minute: int, *, due_at: datetime = NOW) -> Enrolment:
    return Enrolment("e", "jrn", 1, "seg", per_minute, due_at=due_at, at=due_at)


def test_turns_at_a_fixed_time_are_spread_per_minute() -> None:
    enrolment = _fixed(4)
    enrolment.start(NOW, MINUTE)
    turns = [enrolment.take_slot(NOW) for _ in range(3)]
    assert turns == [NOW, NOW + timedelta(seconds=15), NOW + timedelta(seconds=30)]
    assert enrolment.scheduled == 3


def test_turns_at_local_times_are_spread_per_instant() -> None:
    wall = datetime(2026, 3, 14, 10, 0)
    enrolment = Enrolment("e", "jrn", 1, "seg", 60, due_at=first_local_instant(wall))
    enrolment.local_time = wall
    enrolment.start(enrolment.due_at, MINUTE)
    shanghai = enrolment.instant_for("Asia/Shanghai")
    utc = enrolment.instant_for(None)
    assert shanghai == datetime(2026, 3, 14, 2, 0, tzinfo=UTC)
    assert utc == datetime(2026, 3, 14, 10, 0, tzinfo=UTC)
    assert [enrolment.take_slot(shanghai) for _ in range(2)] == [
        shanghai,
        shanghai + timedelta(seconds=1),
    ]
    assert enrolment.take_slot(utc) == utc  # another instant: its own first turn


def test_a_late_start_counts_turns_from_now_not_from_the_missed_time() -> None:
    on_time, late = _fixed(60), _fixed(60)
    on_time.start(NOW + timedelta(seconds=5), MINUTE)
    late.start(NOW + timedelta(hours=1), MINUTE)
    assert on_time.take_slot(NOW) == NOW
    assert late.take_slot(NOW) == NOW + timedelta(hours=1)


def test_members_are_taken_as_their_turn_comes_within_the_lookahead() -> None:
    enrolment = _fixed(6)  # one every 10 s
    enrolment.start(NOW, timedelta(seconds=30))
    room = enrolment.room(NOW, timedelta(seconds=30), batch=500)
    assert room == 4  # now, +10, +20, +30
    for _ in range(room):
        enrolment.take_slot(NOW)
    enrolment.taken(["a", "b", "c", "d"], room, NOW, timedelta(seconds=30))
    assert (enrolment.status, enrolment.cursor) == ("pending", "d")
    assert enrolment.due_at == NOW + timedelta(seconds=10)  # when +40 s is 30 s away
    assert enrolment.room(NOW, timedelta(seconds=30), batch=500) == 0


def test_fewer_members_than_room_means_done() -> None:
    enrolment = _fixed(600)
    enrolment.start(NOW, MINUTE)
    enrolment.taken(["a"], 5, NOW, MINUTE)
    assert (enrolment.status, enrolment.cursor) == ("done", "a")


def test_a_skipped_wall_time_lands_past_the_gap() -> None:
    # 02:30 does not exist in New York on 2026-03-08: it lands at 03:30 EDT.
    at = local_instant(datetime(2026, 3, 8, 2, 30), "America/New_York")
    assert at == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)


def _broadcast(**fields: Any) -> Broadcast:
    return Broadcast(segment="seg_vip", channel="email", template_id="tpl_news", **fields)


def test_a_broadcast_is_a_one_send_journey_left_on_segment_exit() -> None:
    journey = Journey.parse("brd", 1, _broadcast(per_minute=60).graph())
    assert journey.entry.segment == "seg_vip"
    assert journey.exit.on_segment_exit
    assert journey.reentry.rule == "never"
    repeating = _broadcast(per_minute=60, repeat=Repeat(timedelta(days=1), 3))
    assert Journey.parse("brd", 1, repeating.graph()).reentry.rule == "always"


def test_a_broadcast_of_a_topic_sends_under_it_and_keeps_it() -> None:
    broadcast = _broadcast(per_minute=60, topic="newsletter")
    journey = Journey.parse("brd", 1, broadcast.graph())
    assert [send.topic for send in journey.sends()] == ["newsletter"]
    assert Broadcast.from_json(broadcast.to_json()).topic == "newsletter"
    assert broadcast_field("nodes.send.topic") == "topic"
    assert Broadcast.from_json(_broadcast(per_minute=60).to_json()).topic is None


def test_each_occurrence_is_an_enrolment_of_its_own() -> None:
    broadcast = _broadcast(
        per_minute=60, at=NOW + timedelta(hours=1), repeat=Repeat(timedelta(days=1), 3)
    )
    enrolments = broadcast.enrolments("brd", NOW)
    assert [e.id for e in enrolments] == ["brd:1", "brd:2", "brd:3"]
    assert [e.due_at - NOW for e in enrolments] == [
        timedelta(hours=1),
        timedelta(days=1, hours=1),
        timedelta(days=2, hours=1),
    ]


def test_a_local_time_broadcast_starts_when_the_first_clock_reaches_it() -> None:
    wall = datetime(2026, 3, 15, 10, 0)
    [enrolment] = _broadcast(per_minute=60, local_time=wall).enrolments("brd", NOW)
    assert enrolment.due_at == datetime(2026, 3, 14, 20, 0, tzinfo=UTC)
    assert enrolment.local_time == wall


def test_times_that_have_passed_are_refused() -> None:
    with pytest.raises(InvalidDefinition) as raised:
        _broadcast(per_minute=60, at=NOW - timedelta(hours=1)).check_times(NOW)
    assert raised.value.path == "at"
    with pytest.raises(InvalidDefinition) as raised:
        _broadcast(per_minute=60, local_time=datetime(2026, 3, 13, 20, 0)).check_times(NOW)
    assert raised.value.path == "at_local_time"
    _broadcast(per_minute=60, local_time=datetime(2026, 3, 13, 22, 0)).check_times(NOW)
    for far in (datetime(9999, 12, 31, 23, 0), datetime(1, 1, 1)):
        with pytest.raises(InvalidDefinition) as raised:
            _broadcast(per_minute=60, local_time=far).check_times(NOW)
        assert raised.value.path == "at_local_time"
    with pytest.raises(InvalidDefinition) as raised:
        _broadcast(per_minute=60, at=datetime(9999, 1, 1, tzinfo=UTC)).check_times(NOW)
    assert raised.value.path == "at"


def test_a_broadcast_round_trips_through_its_stored_form() -> None:
    broadcast = _broadcast(
        per_minute=30,
        variables={"issue": 3},
        local_time=datetime(2026, 3, 15, 10, 0),
        repeat=Repeat(timedelta(days=7), 4),
    )
    assert Broadcast.from_json(broadcast.to_json()) == broadcast
    at_best = _broadcast(
        per_minute=30,
        at=NOW,
        best_time_within=timedelta(hours=36, minutes=30),
        repeat=Repeat(None, 3, Cron.parse("0 10 * * MON")),
    )
    stored = at_best.to_json()
    assert stored["at_best_time"] == {"within": "PT36H30M"}
    assert stored["repeat"] == {"cron": "0 10 * * MON", "times": 3}
    assert Broadcast.from_json(stored) == at_best


def test_a_cron_broadcast_has_an_occurrence_at_each_time_it_matches() -> None:
    weekly = Repeat(None, 3, Cron.parse("0 10 * * MON"))
    at_fixed = _broadcast(per_minute=60, repeat=weekly).enrolments("brd", NOW)
    assert [e.at for e in at_fixed] == [datetime(2026, 3, d, 10, tzinfo=UTC) for d in (16, 23, 30)]
    at_local = _broadcast(per_minute=60, local_time=datetime(2026, 3, 14), repeat=weekly)
    walls = [e.local_time for e in at_local.enrolments("brd", NOW)]
    assert walls == [datetime(2026, 3, d, 10) for d in (16, 23, 30)]
    never = _broadcast(per_minute=60, repeat=Repeat(None, 2, Cron.parse("0 0 30 2 *")))
    with pytest.raises(InvalidDefinition) as raised:
        never.check_times(NOW)
    assert raised.value.path == "repeat.cron"


def test_at_best_hours_every_member_is_taken_at_the_start() -> None:
    broadcast = _broadcast(per_minute=60, at=NOW, best_time_within=timedelta(hours=24))
    [enrolment] = broadcast.enrolments("brd", NOW)
    assert (enrolment.best_time_within, enrolment.due_at) == (timedelta(hours=24), NOW)
    enrolment.start(NOW, MINUTE)
    assert enrolment.room(NOW, MINUTE, batch=500) == 500  # not only the next minute's turns
    enrolment.taken(["a"] * 500, 500, NOW, MINUTE)
    assert (enrolment.status, enrolment.due_at) == ("pending", NOW)
    # Two members whose best hour is the same instant: the second a turn later.
    hour = NOW + timedelta(hours=5)
    assert [enrolment.take_slot(hour) for _ in range(2)] == [hour, hour + timedelta(seconds=1)]


def test_a_best_time_window_is_at_most_two_days() -> None:
    assert parse_best_time_within("PT24H") == timedelta(hours=24)
    assert iso_duration(timedelta(hours=48)) == "PT48H"
    for within in ("PT49H", "P1M", "tomorrow", "PT0S"):
        with pytest.raises(InvalidDefinition) as raised:
            parse_best_time_within(within)
        assert raised.value.path == "at_best_time.within"


def test_repeats_and_fields_are_named_as_the_request_names_them() -> None:
    assert parse_repeat("P1D", None, 2) == Repeat(timedelta(days=1), 2)
    for every in ("P1M", "PT30S"):
        with pytest.raises(InvalidDefinition) as raised:
            parse_repeat(every, None, 2)
        assert raised.value.path == "repeat.every"
    assert parse_repeat(None, "0 10 * * MON", 2) == Repeat(None, 2, Cron.parse("0 10 * * MON"))
    both: list[tuple[str | None, str | None, str]] = [
        ("P1D", "0 10 * * *", "repeat.cron"),
        (None, None, "repeat.every"),
    ]
    for given_every, given_cron, path in both:
        with pytest.raises(InvalidDefinition) as raised:
            parse_repeat(given_every, given_cron, 2)
        assert raised.value.path == path
    assert broadcast_field("entry.segment") == "segment"
    assert broadcast_field("nodes.send.template_id") == "template_id"


def test_current_members_is_recorded_in_the_entry_of_a_segment_journey() -> None:
    definition = welcome()
    definition["entry"] = {"segment": "seg_new", "current_members": True, "per_minute": 120}
    entry = Journey.parse("jrn", 1, definition).entry
    assert (entry.current_members, entry.per_minute) == (True, 120)
    for entry_fields, path in [
        ({"segment": "s", "per_minute": 5}, "entry.per_minute"),
        ({"segment": "s", "current_members": "yes"}, "entry.current_members"),
        ({"segment": "s", "current_members": True, "per_minute": 0}, "entry.per_minute"),
        ({"event": "e", "current_members": True}, "entry.current_members"),
    ]:
        definition["entry"] = entry_fields
        with pytest.raises(InvalidDefinition) as raised:
            Journey.parse("jrn", 1, definition)
        assert raised.value.path == path

"""Entering a segment's current members, and broadcasts, over the real broker and database."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from libs.common.events import Event
from tests.events import (
    answering,
    entered,
    erasure,
    exited,
    identified,
    merge,
    profile_updated,
    sent,
    suppressed,
)
from tests.integration.journey.conftest import create_segment
from tests.integration.journey.harness import (
    JourneyHarness,
    Requested,
    past_message,
    publish_in_turn,
    requests_of,
    send,
    unique,
)
from tests.integration.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def _segment_with(service: JourneyHarness, members: list[str], *, left: list[str]) -> str:
    """A segment that `members` are in and `left` entered then left, as journey heard it."""
    segment = unique("seg_now")
    await create_segment(service, segment)
    await service.publish(*(entered(p, segment) for p in [*members, *left]))
    await service.publish(*(exited(p, segment) for p in left))

    async def heard() -> bool:
        return await service.members(segment) == set(members)

    await wait_for(heard, within=30, what=f"journey to hear the members of {segment}")
    return segment


async def _requested_by_profile(
    service: JourneyHarness, journey: str, profiles: list[str]
) -> dict[str, Requested]:
    found: dict[str, list[Requested]] = {}

    async def arrived() -> bool:
        nonlocal found
        found = {}
        for request in await service.requested(journey):
            found.setdefault(request.data.profile_id, []).append(request)
        return set(profiles) <= set(found)

    await wait_for(arrived, within=60, what=f"a request of {journey} for each of {profiles}")
    assert set(found) == set(profiles), sorted(found)
    assert all(len(requests) == 1 for requests in found.values()), found
    return {profile: requests[0] for profile, requests in found.items()}


async def _broadcast(service: JourneyHarness, **fields: Any) -> dict[str, Any]:
    body = {"name": "broadcast", "channel": "email", "template_id": "tpl_news", **fields}
    response = await service.http.post("/broadcasts", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _progress(service: JourneyHarness, broadcast: str) -> dict[str, Any]:
    response = await service.http.get(f"/broadcasts/{broadcast}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def test_publishing_with_current_members_enters_exactly_the_members_once(
    journey_service: JourneyHarness,
) -> None:
    members = sorted(unique("prf_member") for _ in range(3))
    former = unique("prf_former")
    segment = await _segment_with(journey_service, members, left=[former])
    journey, later = unique("jrn_now"), unique("jrn_later")
    graph = {
        "entry": {"segment": segment, "current_members": True, "per_minute": 6000},
        "start": "hello",
        "nodes": {"hello": send("hello", "tpl_hello")},
    }
    await journey_service.create_and_publish(journey, graph)
    await journey_service.create_and_publish(
        later,
        {"entry": {"segment": segment}, "start": "hello", "nodes": {"hello": send("hello", "t")}},
    )

    first = await _requested_by_profile(journey_service, journey, members)
    assert {r.data.idempotency_key for r in first.values()} == {
        f"{journey}:v1:hello:{p}:1" for p in members
    }
    # Published without current members: only those who enter from now on.
    assert await journey_service.enrolments(later) == []
    newcomer = unique("prf_newcomer")
    await journey_service.publish(entered(newcomer, segment))
    await requests_of(journey_service, later, newcomer, 1)
    assert {r.data.profile_id for r in await journey_service.requested(later)} == {newcomer}

    # A second version entering current members again: the re-entry rule (never) holds.
    body = {"name": journey, **graph}
    replaced = await journey_service.http.put(f"/journeys/{journey}", json=body)
    assert replaced.status_code == 200, replaced.text
    published = await journey_service.http.post(f"/journeys/{journey}/publish")
    assert published.status_code == 200, published.text

    async def second_done() -> bool:
        return await journey_service.enrolments(journey) == ["done", "done"]

    await wait_for(second_done, within=30, what="the second version's entry of current members")
    again = await _requested_by_profile(journey_service, journey, [*members, newcomer])
    assert again[newcomer].data.idempotency_key == f"{journey}:v1:hello:{newcomer}:1"


async def test_memberships_follow_merges_and_erasures(journey_service: JourneyHarness) -> None:
    kept, merged, erased = unique("prf_kept"), unique("prf_merged"), unique("prf_erased")
    survivor = unique("prf_survivor")
    segment = await _segment_with(journey_service, [kept, merged, erased], left=[])
    # On profile.v1 after the entries on segment.v1: handled once the memberships are known.
    await journey_service.publish(merge(survivor, merged), erasure(erased))

    async def followed() -> bool:
        return await journey_service.members(segment) == {kept, survivor}

    await wait_for(followed, within=30, what="the memberships to follow the merge and erasure")


async def test_the_throttle_spreads_current_members_by_their_due_times(
    journey_service: JourneyHarness,
) -> None:
    members = sorted(unique("prf_spread") for _ in range(5))
    segment = await _segment_with(journey_service, members, left=[])
    journey = unique("jrn_spread")
    await journey_service.create_and_publish(
        journey,
        {
            "entry": {"segment": segment, "current_members": True, "per_minute": 600},
            "start": "hello",
            "nodes": {"hello": send("hello", "tpl_hello")},
        },
    )
    found = await _requested_by_profile(journey_service, journey, members)
    # Each request says when its run moved: its turn, a tenth of a second after the previous.
    due = [found[p].data.behavior_at for p in members]
    assert all(at is not None for at in due)
    first = due[0]
    assert first is not None
    assert [at - first for at in due if at is not None] == [
        timedelta(milliseconds=100 * i) for i in range(len(members))
    ]


async def test_a_broadcast_at_a_fixed_time_requests_one_message_per_member(
    journey_service: JourneyHarness,
) -> None:
    members = sorted(unique("prf_news") for _ in range(3))
    former = unique("prf_gone")
    segment = await _segment_with(journey_service, members, left=[former])
    at = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
    created = await _broadcast(
        journey_service,
        segment=segment,
        variables={"issue": 12},
        at=at.isoformat(),
        per_minute=6000,
    )
    assert created["status"] == "scheduled"
    broadcast = created["id"]

    found = await _requested_by_profile(journey_service, broadcast, members)
    for profile, request in found.items():
        data = request.data
        assert (data.channel, data.template_id) == ("email", "tpl_news")
        assert data.idempotency_key == f"{broadcast}:v1:send:{profile}:1"
        assert data.variables["issue"] == 12
    assert found[members[0]].data.behavior_at == at

    # Dispatch's answers: two sent, one suppressed (as consent or a cap would).
    first, second, third = (answering(found[p].data) for p in members)
    await journey_service.publish(
        sent(**first), sent(**second), suppressed(reason="frequency_cap", **third)
    )

    async def done() -> bool:
        progress = await _progress(journey_service, broadcast)
        return bool(progress["status"] == "done" and progress["progress"]["sent"] == 2)

    await wait_for(done, within=30, what="the broadcast to be done and its sends counted")
    progress = await _progress(journey_service, broadcast)
    assert progress["progress"] == {
        "planned": 3,
        "entered": 3,
        "requested": 3,
        "sent": 2,
        "suppressed": 1,
        "failed": 0,
        "deferred": 0,
        "waiting": 0,
        "exited": 0,
    }
    stats = await journey_service.stats(broadcast)
    assert stats["nodes"]["send"]["completed"] == 3
    assert stats["nodes"]["send"]["outcomes"] == {"sent": 2, "suppressed": 1}


async def test_a_recurring_broadcast_schedules_each_occurrence(
    journey_service: JourneyHarness,
) -> None:
    segment = await _segment_with(journey_service, [unique("prf_weekly")], left=[])
    at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    created = await _broadcast(
        journey_service, segment=segment, at=at.isoformat(), repeat={"every": "P7D", "times": 3}
    )
    assert created["status"] == "scheduled"
    assert created["repeat"] == {"every": timedelta(days=7).total_seconds(), "times": 3}
    occurrences = [
        (o["occurrence"], datetime.fromisoformat(o["at"]), o["status"])
        for o in created["occurrences"]
    ]
    assert occurrences == [(n, at + timedelta(days=7 * (n - 1)), "pending") for n in (1, 2, 3)]
    listed = await journey_service.http.get("/broadcasts")
    assert created["id"] in {b["id"] for b in listed.json()["broadcasts"]}


async def test_a_broadcast_at_local_time_is_due_at_each_persons_clock(
    journey_service: JourneyHarness,
) -> None:
    zones = ["Pacific/Kiritimati", "Asia/Shanghai", "America/New_York", None]
    members = [unique("prf_zone") for _ in zones]
    for profile, zone in zip(members, zones, strict=True):
        if zone is not None:
            await journey_service.publish(identified(profile, traits={"timezone": zone}))

    async def zones_known() -> bool:
        known = [(await journey_service.traits_of(p)).get("timezone") for p in members]
        return known == zones

    await wait_for(zones_known, within=30, what="journey to hear the members' time zones")
    segment = await _segment_with(journey_service, members, left=[])
    # The wall time comes first on the UTC+14 clocks, in a few seconds.
    first_clock = datetime.now(UTC) + timedelta(seconds=4)
    wall = (first_clock + timedelta(hours=14)).replace(tzinfo=None, microsecond=0)
    created = await _broadcast(
        journey_service, segment=segment, at_local_time=wall.isoformat(), per_minute=6000
    )
    broadcast = created["id"]

    def local(zone: str | None) -> datetime:
        return wall.replace(tzinfo=ZoneInfo(zone or "UTC")).astimezone(UTC)

    [first] = await requests_of(journey_service, broadcast, members[0], 1)
    assert first.data.behavior_at == local(zones[0])
    for profile, zone in zip(members[1:], zones[1:], strict=True):
        assert await journey_service.timer_due(broadcast, profile) == local(zone)
    progress = await _progress(journey_service, broadcast)
    assert progress["status"] == "sending"
    assert progress["progress"]["planned"] == 4
    assert progress["progress"]["waiting"] == 3


async def _with_zones(service: JourneyHarness, zones: dict[str, str]) -> None:
    """Journey's copy of each profile knows its time zone."""
    await service.publish(*(identified(p, traits={"timezone": z}) for p, z in zones.items()))

    async def known() -> bool:
        found = {p: (await service.traits_of(p)).get("timezone") for p in zones}
        return found == zones

    await wait_for(known, within=30, what="journey to hear the members' time zones")


async def test_a_broadcast_at_ten_local_time_is_due_at_ten_on_each_of_three_clocks(
    journey_service: JourneyHarness,
) -> None:
    # 10:00 has come on the first clocks (UTC+14) already, so the broadcast starts at once; on
    # these three (UTC-10 to UTC-12) it is still to come, whatever the time of day.
    zones = {
        unique("prf_hawaii"): "Pacific/Honolulu",
        unique("prf_samoa"): "Pacific/Pago_Pago",
        unique("prf_baker"): "Etc/GMT+12",
    }
    await _with_zones(journey_service, zones)
    segment = await _segment_with(journey_service, list(zones), left=[])
    first_clock = datetime.now(UTC) + timedelta(hours=14)
    day = first_clock.date() - timedelta(days=0 if first_clock.hour >= 10 else 1)
    ten = datetime.combine(day, time(10, 0))
    created = await _broadcast(
        journey_service, segment=segment, at_local_time=ten.isoformat(), per_minute=6000
    )
    broadcast = created["id"]
    assert [o["at_local_time"] for o in created["occurrences"]] == [ten.isoformat()]

    async def all_planned() -> bool:
        return bool((await _progress(journey_service, broadcast))["progress"]["planned"] == 3)

    await wait_for(all_planned, within=30, what="every member's turn to be planned")
    for profile, zone in zones.items():
        # The turn, whether still to come (held) or come already (requested).
        turn = (await journey_service.run_of(broadcast, profile))["trigger"]["occurred_at"]
        due = datetime.fromisoformat(turn)
        assert due == ten.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC), zone
        assert due.astimezone(ZoneInfo(zone)).time() == time(10, 0)


def _next_local_hour(zone: ZoneInfo, hour: int, after: datetime) -> datetime:
    """The first time after `after` that the clock of `zone` shows hour:00."""
    local = after.astimezone(zone)
    at = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    return (at if at > local else at + timedelta(days=1)).astimezone(UTC)


def _engaged_at(profile: str, zone: ZoneInfo, best: int) -> list[Event[Any]]:
    """Five days of email to the profile at three hours of its clock, opened only at `best`."""
    history: list[Event[Any]] = []
    for days_ago in range(1, 6):
        day = datetime.now(zone).date() - timedelta(days=days_ago)
        for hour in (best, (best + 8) % 24, (best + 16) % 24):
            sent_at = datetime.combine(day, time(hour, 5), zone).astimezone(UTC)
            opened_at = sent_at + timedelta(minutes=20) if hour == best else None
            history += past_message(profile, "email", sent_at, engaged_at=opened_at)
    return history


async def test_a_broadcast_at_best_time_is_due_at_each_members_best_hour(
    journey_service: JourneyHarness,
) -> None:
    tokyo, new_york = ZoneInfo("Asia/Tokyo"), ZoneInfo("America/New_York")
    # Hours that are not under way and come round within the window.
    tokyo_best = (datetime.now(tokyo).hour + 5) % 24
    new_york_best = (datetime.now(new_york).hour + 9) % 24
    first, second = sorted(unique("prf_tokyo") for _ in range(2))
    third = unique("prf_new_york")
    best = {
        first: (tokyo, tokyo_best),
        second: (tokyo, tokyo_best),
        third: (new_york, new_york_best),
    }
    for profile, (zone, hour) in best.items():
        traits = profile_updated(profile, traits={"timezone": zone.key})
        await publish_in_turn(journey_service, profile, traits, _engaged_at(profile, zone, hour))
    segment = await _segment_with(journey_service, list(best), left=[])
    before = datetime.now(UTC)
    created = await _broadcast(
        journey_service, segment=segment, at_best_time={"within": "PT24H"}, per_minute=60
    )
    broadcast = created["id"]
    assert created["at_best_time"] == {"within": "PT24H"}

    async def all_planned() -> bool:
        return bool((await _progress(journey_service, broadcast))["progress"]["planned"] == 3)

    await wait_for(all_planned, within=30, what="every member's best hour to be chosen")
    for profile, (zone, hour) in best.items():
        best_hour_at = _next_local_hour(zone, hour, before)
        [decision] = await journey_service.decisions(broadcast, profile)
        assert (decision["kind"], decision["node_id"], decision["channel"]) == (
            "send_time",
            "send",
            "email",
        )
        assert (decision["hour"], decision["explored"]) == (hour, False)
        assert datetime.fromisoformat(decision["wake_at"]) == best_hour_at
        # The same best hour as the first: a turn later (the throttle, 60 a minute).
        turn = timedelta(seconds=1 if profile == second else 0)
        assert await journey_service.timer_due(broadcast, profile) == best_hour_at + turn
        run = await journey_service.run_of(broadcast, profile)
        # Held for its turn; its send will count as one the model timed.
        assert (run["status"], run["timing"]["targeted"]) == ("held", True)
    progress = await _progress(journey_service, broadcast)
    assert (progress["status"], progress["progress"]["waiting"]) == ("sending", 3)
    assert await journey_service.requested(broadcast) == []


async def test_a_cron_broadcast_has_an_occurrence_each_time_it_matches(
    journey_service: JourneyHarness,
) -> None:
    segment = await _segment_with(journey_service, [unique("prf_monday")], left=[])
    start = (datetime.now(UTC) + timedelta(days=1)).replace(tzinfo=None, microsecond=0)
    created = await _broadcast(
        journey_service,
        segment=segment,
        at_local_time=start.isoformat(),
        repeat={"cron": "0 10 * * MON", "times": 3},
    )
    assert created["repeat"] == {"cron": "0 10 * * MON", "times": 3}
    walls = [datetime.fromisoformat(o["at_local_time"]) for o in created["occurrences"]]
    assert [(w.weekday(), w.time()) for w in walls] == [(0, time(10, 0))] * 3
    assert start <= walls[0] < start + timedelta(days=7)
    assert [b - a for a, b in itertools.pairwise(walls)] == [timedelta(days=7)] * 2
    # Without a local time: on the UTC clock, from now (or `at`).
    fixed = await _broadcast(
        journey_service, segment=segment, repeat={"cron": "30 9 1 * *", "times": 2}
    )
    instants = [datetime.fromisoformat(o["at"]) for o in fixed["occurrences"]]
    assert [(i.day, i.time(), i.utcoffset()) for i in instants] == [
        (1, time(9, 30), timedelta(0))
    ] * 2


async def test_cancelling_a_broadcast_stops_the_rest(journey_service: JourneyHarness) -> None:
    members = sorted(unique("prf_cancel") for _ in range(4))
    segment = await _segment_with(journey_service, members, left=[])
    # Two a minute: the first now, the next 30 s later.
    broadcast = (await _broadcast(journey_service, segment=segment, per_minute=2))["id"]
    await requests_of(journey_service, broadcast, members[0], 1)

    response = await journey_service.http.post(f"/broadcasts/{broadcast}/cancel")
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["status"] == "cancelled"
    # Those whose turn comes within the lookahead (a minute: now, +30 s, +60 s) were taken; the
    # fourth was still to be taken, and no longer is.
    assert cancelled["progress"] == {
        "planned": 3,
        "entered": 1,
        "requested": 1,
        "sent": 0,
        "suppressed": 0,
        "failed": 0,
        "deferred": 0,
        "waiting": 0,
        "exited": 2,
    }
    assert [o["status"] for o in cancelled["occurrences"]] == ["cancelled"]
    assert await journey_service.timers_of(broadcast) == 0
    assert [r.data.profile_id for r in await journey_service.requested(broadcast)] == [members[0]]
    paused = await journey_service.http.post(f"/broadcasts/{broadcast}/pause")
    assert paused.status_code == 409, paused.text
    deleted = await journey_service.http.delete(f"/broadcasts/{broadcast}")
    assert deleted.status_code == 204, deleted.text
    assert (await journey_service.http.get(f"/broadcasts/{broadcast}")).status_code == 404
    assert await journey_service.enrolments(broadcast) == []


async def test_a_paused_broadcast_holds_its_sends_until_resumed_then_spreads_them(
    journey_service: JourneyHarness,
) -> None:
    members = sorted(unique("prf_hold") for _ in range(3))
    segment = await _segment_with(journey_service, members, left=[])
    at = datetime.now(UTC) + timedelta(seconds=2)
    broadcast = (
        await _broadcast(journey_service, segment=segment, at=at.isoformat(), per_minute=600)
    )["id"]
    paused = await journey_service.http.post(f"/broadcasts/{broadcast}/pause")
    assert paused.json()["status"] == "paused"

    async def all_held() -> bool:
        progress = (await _progress(journey_service, broadcast))["progress"]
        held = progress["planned"] == 3 and await journey_service.timers_of(broadcast) == 0
        return bool(held)

    await wait_for(all_held, within=30, what="every member's turn to come while paused")
    assert await journey_service.requested(broadcast) == []
    resumed = await journey_service.http.post(f"/broadcasts/{broadcast}/resume")
    assert resumed.status_code == 200, resumed.text
    found = await _requested_by_profile(journey_service, broadcast, members)
    due = [found[p].data.behavior_at for p in members]
    gaps = [b - a for a, b in itertools.pairwise(due) if a is not None and b is not None]
    assert gaps == [timedelta(milliseconds=100)] * 2, due


async def test_bad_broadcasts_are_refused_naming_the_field(
    journey_service: JourneyHarness,
) -> None:
    segment = unique("seg_bad")
    await create_segment(journey_service, segment)
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"segment": unique("seg_missing")}, "segment"),
        ({"segment": segment, "at": "2030-01-01T10:00:00"}, "at"),
        ({"segment": segment, "at": past}, "at"),
        ({"segment": segment, "at": "tomorrow"}, "at"),
        ({"segment": segment, "at_local_time": "2020-01-01T10:00:00"}, "at_local_time"),
        (
            {"segment": segment, "at": "2030-01-01T10:00:00Z", "at_local_time": "2030-01-01T10:00"},
            "at",
        ),
        ({"segment": segment, "per_minute": 0}, "per_minute"),
        ({"segment": segment, "channel": "E-mail"}, "channel"),
        ({"segment": segment, "repeat": {"every": "P1M", "times": 3}}, "repeat.every"),
        ({"segment": segment, "repeat": {"every": "P1D", "times": 1}}, "repeat.times"),
        ({"segment": segment, "repeat": {"times": 3}}, "repeat.every"),
        ({"segment": segment, "repeat": {"cron": "0 25 * * *", "times": 3}}, "repeat.cron"),
        (
            {"segment": segment, "repeat": {"cron": "0 10 * * 1", "every": "P7D", "times": 3}},
            "repeat.cron",
        ),
        ({"segment": segment, "repeat": {"cron": "0 0 30 2 *", "times": 2}}, "repeat.cron"),
        ({"segment": segment, "at_best_time": {"within": "PT72H"}}, "at_best_time.within"),
        ({"segment": segment, "at_best_time": {}}, "at_best_time.within"),
        (
            {
                "segment": segment,
                "at_local_time": "2030-01-01T10:00:00",
                "at_best_time": {"within": "PT24H"},
            },
            "at_best_time",
        ),
    ]
    for fields, field in cases:
        body = {"name": "bad", "channel": "email", "template_id": "tpl", **fields}
        response = await journey_service.http.post("/broadcasts", json=body)
        assert response.status_code == 422, (fields, response.text)
        assert response.json()["error"]["field"] == f"body.{field}", (fields, response.text)

    journey = await journey_service.create(
        unique("jrn_bad"),
        {
            "entry": {"segment": segment, "per_minute": 10},
            "start": "a",
            "nodes": {"a": send("a", "tpl")},
        },
    )
    assert journey.status_code == 422, journey.text
    assert journey.json()["error"]["field"] == "entry.per_minute"
    broadcast = (await _broadcast(journey_service, segment=segment))["id"]
    publish = await journey_service.http.post(f"/journeys/{broadcast}/publish")
    assert publish.status_code == 404, publish.text
    assert (await journey_service.http.get(f"/broadcasts/{unique('brd')}")).status_code == 404

"""The journey service learns each person's best hour and best channel from their outcomes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from libs.common.events import Event
from tests.events import answering, entered, erasure, merge, profile_updated, sent, suppressed
from tests.integration.journey.conftest import create_segment
from tests.integration.journey.harness import (
    JourneyHarness,
    past_message,
    publish_in_turn,
    requests_of,
    unique,
)
from tests.integration.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

TOKYO = ZoneInfo("Asia/Tokyo")


def at_local_hour(days_ago: int, hour: int) -> datetime:
    """Five past `hour` in Tokyo, `days_ago` days back, in UTC."""
    day = datetime.now(TOKYO).date() - timedelta(days=days_ago)
    return datetime(day.year, day.month, day.day, hour, 5, tzinfo=TOKYO).astimezone(UTC)


async def wait_for_decision(service: JourneyHarness, journey: str, profile: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    async def decided() -> bool:
        nonlocal found
        found = await service.decisions(journey, profile)
        return bool(found)

    await wait_for(decided, within=30, what=f"a decision of {journey} for {profile}")
    [decision] = found
    return decision


async def test_a_journey_waits_for_the_hour_the_person_engages_at(
    journey_service: JourneyHarness,
) -> None:
    journey, segment, profile = unique("jrn_hour"), unique("seg_hour"), unique("prf_hour")
    # An hour that is not under way now and comes round within the window; the others far off.
    best = (datetime.now(TOKYO).hour + 6) % 24
    history: list[Event[Any]] = []
    for days_ago in range(1, 6):
        for hour in (best, (best + 8) % 24, (best + 16) % 24):
            sent_at = at_local_hour(days_ago, hour)
            opened_at = sent_at + timedelta(minutes=20) if hour == best else None
            history += past_message(profile, "email", sent_at, engaged_at=opened_at)
    await create_segment(journey_service, segment)
    await journey_service.create_and_publish(
        journey,
        {
            "entry": {"segment": segment},
            "start": "evening",
            "nodes": {
                "evening": {
                    "type": "wait",
                    "best_time": {"channel": "email", "within": "PT24H"},
                    "next": "offer",
                },
                "offer": {"type": "send", "channel": "email", "template_id": "tpl_offer"},
            },
        },
    )
    await publish_in_turn(
        journey_service,
        profile,
        profile_updated(profile, traits={"timezone": "Asia/Tokyo"}),
        history,
    )
    before = datetime.now(UTC)
    await journey_service.publish(entered(profile, segment))

    decision = await wait_for_decision(journey_service, journey, profile)
    assert (decision["kind"], decision["node_id"], decision["channel"]) == (
        "send_time",
        "evening",
        "email",
    )
    assert (decision["hour"], decision["explored"], decision["probability"]) == (best, False, 1.0)
    due = await journey_service.timer_due(journey, profile)
    assert due is not None and due == datetime.fromisoformat(decision["wake_at"])
    assert (due.astimezone(TOKYO).hour, due.minute, due.second) == (best, 0, 0)
    assert before < due <= before + timedelta(hours=24)
    assert await journey_service.engagement(profile) == {
        ("email", best): (5, 5),
        ("email", (best + 8) % 24): (5, 0),
        ("email", (best + 16) % 24): (5, 0),
    }
    stats = await journey_service.stats(journey)
    assert stats["nodes"]["evening"]["waiting"] == 1


async def test_a_send_at_a_best_hour_under_way_goes_out_at_once_as_a_targeted_send(
    journey_service: JourneyHarness,
) -> None:
    journey, segment, profile = unique("jrn_now"), unique("seg_now"), unique("prf_now")
    now = datetime.now(TOKYO)
    if now.minute >= 58:  # the hour must still be under way when the run reaches the send
        await asyncio.sleep(3600 - now.minute * 60 - now.second + 5)
    best = datetime.now(TOKYO).hour
    history: list[Event[Any]] = []
    for days_ago in range(1, 6):
        for hour in (best, (best + 12) % 24):
            sent_at = at_local_hour(days_ago, hour)
            opened_at = sent_at + timedelta(minutes=20) if hour == best else None
            history += past_message(profile, "email", sent_at, engaged_at=opened_at)
    await create_segment(journey_service, segment)
    offer = {"type": "send", "channel": "email", "template_id": "tpl_offer"}
    await journey_service.create_and_publish(
        journey,
        {
            "entry": {"segment": segment},
            "start": "offer",
            "nodes": {"offer": {**offer, "at_best_time_within": "PT12H"}},
        },
    )
    await publish_in_turn(
        journey_service,
        profile,
        profile_updated(profile, traits={"timezone": "Asia/Tokyo"}),
        history,
    )
    await journey_service.publish(entered(profile, segment))

    [request] = await requests_of(journey_service, journey, profile, 1)
    assert (await wait_for_decision(journey_service, journey, profile))["hour"] == best
    assert await journey_service.targeted(request.data.request_id) is True
    population = await journey_service.untargeted_sends("email", best)
    await journey_service.publish(sent(**answering(request.data)))

    async def counted() -> bool:
        return (await journey_service.engagement(profile))[("email", best)][0] == 6

    await wait_for(counted, within=30, what="the targeted send counted for the person")
    assert await journey_service.untargeted_sends("email", best) == population
    stats = (await journey_service.stats(journey))["nodes"]["offer"]
    assert (stats["entered"], stats["completed"], stats["waiting"]) == (1, 1, 0)


async def test_a_send_on_several_channels_picks_the_learned_one_and_falls_back(
    journey_service: JourneyHarness,
) -> None:
    journey, segment, profile = unique("jrn_chan"), unique("seg_chan"), unique("prf_chan")
    addresses = profile_updated(
        profile, traits={"email": f"{profile}@example.com", "push_token": f"tok_{profile}"}
    )
    history: list[Event[Any]] = []
    for days_ago in range(1, 5):
        sent_at = datetime.now(UTC) - timedelta(days=days_ago)
        history += past_message(profile, "email", sent_at)
        history += past_message(profile, "push", sent_at, engaged_at=sent_at + timedelta(hours=1))
    await create_segment(journey_service, segment)
    await journey_service.create_and_publish(
        journey,
        {
            "entry": {"segment": segment},
            "start": "offer",
            "nodes": {
                "offer": {
                    "type": "send",
                    # Email first: on a tie, or with no history, it would be chosen.
                    "channels": [
                        {"channel": "email", "template_id": "tpl_offer_email"},
                        {"channel": "push", "template_id": "tpl_offer_push"},
                    ],
                }
            },
        },
    )
    await publish_in_turn(journey_service, profile, addresses, history)
    await journey_service.publish(entered(profile, segment))

    [first] = await requests_of(journey_service, journey, profile, 1)
    assert (first.data.channel, first.data.template_id) == ("push", "tpl_offer_push")
    decision = await wait_for_decision(journey_service, journey, profile)
    assert (decision["kind"], decision["channel"]) == ("channel", "push")
    assert decision["ranking"] == ["push", "email"]
    assert decision["request_id"] == first.data.request_id

    await journey_service.publish(suppressed(**answering(first.data), reason="consent"))
    _, second = await requests_of(journey_service, journey, profile, 2)
    assert (second.data.channel, second.data.template_id) == ("email", "tpl_offer_email")
    assert second.data.idempotency_key == f"{first.data.idempotency_key}:email"
    assert (await journey_service.stats(journey))["nodes"]["offer"]["fallbacks"] == 1


async def test_a_merge_moves_the_evidence_and_an_erasure_deletes_it(
    journey_service: JourneyHarness,
) -> None:
    anonymous, known = unique("prf_anon"), unique("prf_known")
    sent_at = at_local_hour(1, 9)
    await journey_service.publish(
        *past_message(anonymous, "email", sent_at, engaged_at=sent_at + timedelta(hours=2)),
        *past_message(known, "email", sent_at),
    )

    async def counted() -> bool:
        return bool(await journey_service.engagement(anonymous))

    await wait_for(counted, within=30, what="the anonymous profile's engagement")
    await journey_service.publish(merge(known, anonymous))

    async def merged() -> bool:
        return await journey_service.engagement(known) == {("email", 0): (2, 1)}

    await wait_for(merged, within=30, what="the merged engagement")  # 09:05 Tokyo is 00:05 UTC
    assert await journey_service.engagement(anonymous) == {}
    assert await journey_service.messages_of(known) == 2
    await journey_service.publish(erasure(known))

    async def erased() -> bool:
        return not await journey_service.engagement(known)

    await wait_for(erased, within=30, what="the erased engagement")
    assert await journey_service.messages_of(known) == 0

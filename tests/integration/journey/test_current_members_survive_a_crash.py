"""SIGKILL the journey process while it enters a segment's current members: after a restart it
goes on from its cursor, and each member enters once, at the turn the throttle gave them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from libs.devstack.pytest_plugin import ServiceLauncher
from libs.devstack.stack import Stack
from tests.events import entered
from tests.integration.journey.harness import JourneyHarness, send, unique
from tests.integration.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

MEMBERS = 8


async def test_entering_current_members_resumes_after_a_crash_and_enters_each_once(
    stack: Stack, service_process: ServiceLauncher
) -> None:
    process = await service_process(
        "services.journey",
        name=f"journey_enrol_{unique('r')[-8:]}",
        migrate=True,
        env={
            "CLOSELOOP_JOURNEY_SEGMENT_URL": "",
            "CLOSELOOP_JOURNEY_CONTENT_URL": "",
            "CLOSELOOP_JOURNEY_TIMER_POLL_INTERVAL_MS": "100",
            # Each member is taken only when their turn comes: the crash finds some taken and
            # some not.
            "CLOSELOOP_JOURNEY_ENROLMENT_LOOKAHEAD_S": "0",
            "CLOSELOOP_KAFKA_SESSION_TIMEOUT_MS": "6000",
        },
        ready_timeout=60,
    )
    service = JourneyHarness(stack, process)
    try:
        segment, journey = unique("seg_crash"), unique("jrn_enrol")
        members = sorted(unique("prf_enrol") for _ in range(MEMBERS))
        await service.publish(*(entered(p, segment) for p in members))

        async def heard() -> bool:
            return await service.members(segment) == set(members)

        await wait_for(heard, within=90, what="journey to hear the segment's members")
        await service.create_and_publish(
            journey,
            {
                "entry": {"segment": segment, "current_members": True, "per_minute": 60},
                "start": "hello",
                "nodes": {"hello": send("hello", "tpl_hello")},
            },
        )

        async def some_entered() -> bool:
            return len(await service.requested(journey)) >= 2

        await wait_for(some_entered, within=30, what="the first members to enter")
        await process.kill()
        process.start()
        await process.wait_ready(60)

        async def all_entered() -> bool:
            return {r.data.profile_id for r in await service.requested(journey)} == set(members)

        await wait_for(all_entered, within=90, what="every member to enter after the restart")
        requests = await service.requested(journey)
        # The outbox may publish an event again after a crash (same ce_id, skipped by every
        # inbox); entering a member twice would make a second event, or a second run.
        by_profile = {r.data.profile_id: r for r in requests}
        assert len({r.event_id for r in requests}) == MEMBERS
        assert {r.data.idempotency_key for r in requests} == {
            f"{journey}:v1:hello:{p}:1" for p in members
        }
        due = [by_profile[p].data.behavior_at for p in members]
        first = due[0]
        assert first is not None
        assert [at - first for at in due if at is not None] == [
            timedelta(seconds=i) for i in range(MEMBERS)
        ]

        async def done() -> bool:
            return await service.enrolments(journey) == ["done"]

        await wait_for(done, within=30, what="the entry of current members to be done")
        assert (await service.stats(journey))["total"]["entered"] == MEMBERS
    finally:
        await service.aclose()

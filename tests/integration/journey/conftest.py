"""A segment service (for reference checks) and one journey service per test module."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from libs.devstack.pytest_plugin import ServiceLauncher
from libs.devstack.stack import Stack
from tests.events import entered
from tests.integration.journey.harness import JourneyHarness, send, unique
from tests.integration.support import wait_for

TIMER_POLL_MS = "200"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def journey_service(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[JourneyHarness]:
    launcher = ServiceLauncher(stack, tmp_path_factory.mktemp("journey-logs"))
    run = uuid.uuid4().hex[:8]
    try:
        segment = await launcher(
            "services.segment", name=f"segment_j{run}", migrate=True, ready_timeout=60
        )
        process = await launcher(
            "services.journey",
            name=f"journey_{run}",
            migrate=True,
            env={
                "CLOSELOOP_JOURNEY_SEGMENT_URL": segment.url,
                "CLOSELOOP_JOURNEY_CONTENT_URL": "",
                "CLOSELOOP_JOURNEY_TIMER_POLL_INTERVAL_MS": TIMER_POLL_MS,
                # Learned decisions take the best hour and channel, so tests can say which.
                "CLOSELOOP_JOURNEY_EXPLORE_SHARE": "0",
                "CLOSELOOP_KAFKA_SESSION_TIMEOUT_MS": "6000",
            },
            ready_timeout=60,
        )
        harness = JourneyHarness(stack, process, segment.url)
        await warm_up(harness)
        yield harness
        await harness.aclose()
    finally:
        await launcher.stop_all()


async def create_segment(harness: JourneyHarness, segment_id: str) -> None:
    """A real segment in the segment service, so the journey's reference check finds it."""
    response = await harness.http.post(
        f"{harness.segment_url}/segments",
        json={"id": segment_id, "name": segment_id, "conditions": {"tag": segment_id}},
    )
    assert response.status_code == 201, response.text


async def warm_up(harness: JourneyHarness) -> None:
    """Return once the consumer has joined its group and handles events (the join takes ~5 s)."""
    journey, segment, profile = unique("jrn_warm"), unique("seg_warm"), unique("prf_warm")
    await create_segment(harness, segment)
    await harness.create_and_publish(
        journey,
        {"entry": {"segment": segment}, "start": "hello", "nodes": {"hello": send("hello", "tpl")}},
    )
    await harness.publish(entered(profile, segment))

    async def consuming() -> bool:
        return len(await harness.requested(journey)) == 1

    await wait_for(consuming, within=90, what="the journey consumer to handle events")

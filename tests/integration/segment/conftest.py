"""One segment service process for the module's tests, warmed up until its consumer consumes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from libs.devstack.stack import Stack
from tests.events import profile_updated
from tests.integration.segment.harness import SegmentHarness
from tests.integration.support import started_service, wait_for


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def segment_service(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SegmentHarness]:
    logs = tmp_path_factory.mktemp("segment-logs")
    async with started_service(
        stack,
        logs,
        "segment",
        env={
            "CLOSELOOP_SEGMENT_TIMER_POLL_INTERVAL_MS": "200",
            "CLOSELOOP_KAFKA_SESSION_TIMEOUT_MS": "6000",
        },
    ) as (process, run):
        harness = SegmentHarness(stack, process)
        await _warm_up(harness, run)
        yield harness
        await harness.aclose()


async def _warm_up(harness: SegmentHarness, run: str) -> None:
    """Return once the consumer has joined its group and handles events (the join takes ~5 s)."""
    segment, profile = f"seg_warm_{run}", f"prf_warm_{run}"
    response = await harness.create(segment, {"tag": f"warm_{run}"})
    response.raise_for_status()
    await harness.publish(profile_updated(profile, changes={"tags": [f"warm_{run}"]}))

    async def consuming() -> bool:
        return await harness.members(segment) == [profile]

    await wait_for(consuming, within=90, what="the segment consumer to handle events")

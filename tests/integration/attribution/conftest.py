"""One attribution service process for the module's tests, warmed up until it consumes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio

from libs.devstack.stack import Stack
from tests.events import behaviour
from tests.integration.attribution.harness import AttributionHarness
from tests.integration.support import started_service, wait_for


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def attribution_service(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AttributionHarness]:
    logs = tmp_path_factory.mktemp("attribution-logs")
    async with started_service(
        stack, logs, "attribution", env={"CLOSELOOP_KAFKA_SESSION_TIMEOUT_MS": "6000"}
    ) as (process, run):
        harness = AttributionHarness(stack, process)
        await _warm_up(harness, run)
        yield harness
        await harness.aclose()


async def _warm_up(harness: AttributionHarness, run: str) -> None:
    """Return once the consumer has joined its group and handles events (the join takes ~5 s)."""
    definition = f"cnv_warm_{run}"
    await harness.define(definition, f"warm_{run}")
    await harness.publish(behaviour(f"prf_warm_{run}", f"warm_{run}", at=datetime.now(UTC)))

    async def consuming() -> bool:
        return await harness.conversion_totals(definition) is not None

    await wait_for(consuming, within=90, what="the attribution consumer to handle events")

"""Ingest, profile and segment as real processes, started once per module and warmed up."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from libs.devstack.stack import Stack
from tests.integration.loop.harness import Loop, running_loop


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def loop(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Loop]:
    """The three services, each in its own schema and consumer group, with a fresh source."""
    async with running_loop(
        stack,
        tmp_path_factory.mktemp("loop-logs"),
        segment_env={"CLOSELOOP_SEGMENT_TIMER_POLL_INTERVAL_MS": "200"},
    ) as (harness, _):
        yield harness

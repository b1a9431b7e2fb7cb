"""Fixtures of the bus tests: counter test services that are stopped whatever the outcome."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest_asyncio

from libs.devstack.stack import Stack
from tests.integration.counter_service.harness import CounterHarness

MakeCounter = Callable[..., CounterHarness]


@pytest_asyncio.fixture(loop_scope="session")
async def counter_service(stack: Stack, tmp_path: Path) -> AsyncIterator[MakeCounter]:
    made: list[CounterHarness] = []

    def make(**settings: Any) -> CounterHarness:
        counter = CounterHarness(stack, tmp_path, **settings)
        made.append(counter)
        return counter

    yield make
    for counter in made:
        await counter.process.stop()

"""When a dependency is down the consumer retries the batch later; nothing is dead-lettered."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio

from libs.common import topics
from libs.common.bus import (
    Batch,
    DependencyUnavailable,
    dlq,
)
from libs.common.bus.reader import header
from libs.devstack.stack import Stack
from tests.integration.support import ThrowawayBus as Bus
from tests.integration.support import (
    consuming,
    one_key_behaviours,
    publish,
    read_topic,
    throwaway_bus,
    wait_for,
)

pytestmark = pytest.mark.integration

EVENTS = 30


@dataclass
class FlakyDependency:
    """Stands for something the handler needs (a database, a service) that can be down."""

    down: bool = True
    failure: type[Exception] = DependencyUnavailable
    attempts: int = 0
    applied: set[str] = field(default_factory=set)

    async def handle(self, batch: Batch) -> None:
        self.attempts += 1
        if self.down:
            raise self.failure("the dependency does not answer")
        self.applied.update(event.id for event in batch.events)


@pytest_asyncio.fixture(loop_scope="session")
async def bus(stack: Stack) -> AsyncIterator[Bus]:
    async with throwaway_bus(
        stack.kafka_bootstrap, stack.database_url, "flaky", handler_retry_backoff_ms=20
    ) as created:
        yield created


async def _run_until_recovered(stack: Stack, bus: Bus, dependency: FlakyDependency) -> None:
    events = one_key_behaviours(EVENTS, "prf_flaky")
    # Published before the consumer joins, so its first batch holds all of them.
    await publish(stack.kafka_bootstrap, events, topic=bus.topic)
    async with consuming(bus, dependency.handle) as consumer:

        async def retried_several_times() -> bool:
            return dependency.attempts >= 8

        await wait_for(retried_several_times, within=60, what="the batch to be retried")
        assert consumer.is_alive()
        assert not dependency.applied
        dependency.down = False

        async def all_applied() -> bool:
            return dependency.applied == {event.id for event in events}

        await wait_for(all_applied, within=60, what="every event applied after recovery")
    letters = [
        record
        for record in await read_topic(stack.kafka_bootstrap, topics.DLQ)
        if header(record, dlq.SOURCE_TOPIC) == bus.topic
    ]
    assert letters == [], "a dependency outage must not dead-letter the events"


async def test_handler_reporting_a_dependency_down_is_retried_not_dead_lettered(
    stack: Stack, bus: Bus
) -> None:
    await _run_until_recovered(stack, bus, FlakyDependency(failure=DependencyUnavailable))


async def test_most_of_a_batch_failing_is_retried_not_dead_lettered(stack: Stack, bus: Bus) -> None:
    await _run_until_recovered(stack, bus, FlakyDependency(failure=RuntimeError))


async def test_batches_polled_ahead_are_given_back_when_the_one_in_flight_waits(
    stack: Stack,
) -> None:
    """The consumer polls the next batch while one is handled; when that one is rewound to
    wait for its dependency, what was polled ahead must be polled again, not skipped."""
    async with throwaway_bus(
        stack.kafka_bootstrap,
        stack.database_url,
        "ahead",
        handler_retry_backoff_ms=20,
        batch_max_records=4,  # many small batches, each from a few of the 12 partitions
    ) as bus:
        applied: list[str] = []
        outages = iter(range(6))  # the first six batches find the dependency down

        async def handle(batch: Batch) -> None:
            if next(outages, None) is not None:
                raise DependencyUnavailable("the dependency does not answer")
            applied.extend(event.id for event in batch.events)

        events = [
            dataclasses.replace(event, key=f"prf_{index}")
            for index, event in enumerate(one_key_behaviours(120, "prf_flaky"))
        ]
        await publish(stack.kafka_bootstrap, events, topic=bus.topic)
        async with consuming(bus, handle):

            async def all_applied() -> bool:
                return set(applied) == {event.id for event in events}

            await wait_for(all_applied, within=60, what="every event applied after the outages")
        assert sorted(applied) == sorted(event.id for event in events), "each exactly once"

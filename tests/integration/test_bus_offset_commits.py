"""When the consumer commits offsets: not after every batch while it is behind (each commit is a
request the broker serves), and all of them as soon as it has caught up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY

from libs.common.bus import Batch
from libs.devstack.stack import Stack
from tests.integration.support import ThrowawayBus as Bus
from tests.integration.support import (
    consuming,
    one_key_behaviours,
    publish,
    throwaway_bus,
    wait_for,
)

pytestmark = pytest.mark.integration

EVENTS = 1_000
BATCH = 50
AN_HOUR_MS = 3_600_000


@pytest.fixture
async def bus(stack: Stack) -> AsyncIterator[Bus]:
    async with throwaway_bus(stack.kafka_bootstrap, stack.database_url, "offsets") as created:
        yield created


@pytest.fixture
async def admin(stack: Stack) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def _committed(admin: AIOKafkaAdminClient, group: str, topic: str) -> int:
    # Partitions named: the embedded broker closes the connection on a fetch of "all".
    partitions = [TopicPartition(topic, partition) for partition in range(12)]
    offsets = await admin.list_consumer_group_offsets(group, partitions=partitions)
    return sum(max(position.offset, 0) for position in offsets.values())


async def test_offsets_wait_while_behind_and_are_all_committed_once_caught_up(
    stack: Stack, bus: Bus, admin: AIOKafkaAdminClient
) -> None:
    group = f"closeloop-{bus.settings.service_name}"
    await publish(stack.kafka_bootstrap, one_key_behaviours(EVENTS, "prf_offsets"), bus.topic)
    handled: list[int] = []
    committed_while_handling: list[int] = []

    async def handle(batch: Batch) -> None:
        committed_while_handling.append(await _committed(admin, group, bus.topic))
        handled.extend(1 for _ in batch.events)

    async with consuming(bus, handle, batch_max_records=BATCH, kafka_commit_interval_ms=AN_HOUR_MS):
        await wait_for(
            lambda: _all_committed(admin, group, bus.topic),
            within=60,
            what=f"{EVENTS} offsets committed once the consumer caught up",
        )

    assert len(handled) == EVENTS
    assert len(committed_while_handling) >= EVENTS // BATCH  # one partition: full batches
    assert set(committed_while_handling) == {0}  # nothing committed batch by batch


async def _all_committed(admin: AIOKafkaAdminClient, group: str, topic: str) -> bool:
    return await _committed(admin, group, topic) == EVENTS


async def test_partitions_given_up_in_a_rebalance_are_committed_first(
    stack: Stack, bus: Bus
) -> None:
    """A second consumer joins while the first is busy and holds an hour of offsets: the first
    commits what it handled as its partitions are revoked, so the second redelivers none of it
    (the inbox would hide redelivered events from the handlers; the duplicate count shows
    them)."""
    group = f"closeloop-{bus.settings.service_name}"
    first: list[str] = []
    second: list[str] = []
    published: list[str] = []
    publishing = True

    def handler(handled: list[str]) -> Callable[[Batch], Awaitable[None]]:
        async def handle(batch: Batch) -> None:
            handled.extend(event.id for event in batch.events)

        return handle

    async def keep_publishing() -> None:
        round_ = 0
        while publishing:
            events = [
                event
                for person in range(12)  # several keys: every partition gets some
                for event in one_key_behaviours(2, f"prf_rebalance_{round_}_{person}")
            ]
            await publish(stack.kafka_bootstrap, events, bus.topic)
            published.extend(event.id for event in events)
            round_ += 1

    def duplicates() -> float:
        labels = {"group": group, "topic": bus.topic}
        return REGISTRY.get_sample_value("closeloop_events_duplicate_total", labels) or 0.0

    async with consuming(bus, handler(first), kafka_commit_interval_ms=AN_HOUR_MS):
        publisher = asyncio.create_task(keep_publishing())
        try:
            await wait_for(_at_least(first, 100), within=60, what="the first consumer busy")
            async with consuming(bus, handler(second), kafka_commit_interval_ms=AN_HOUR_MS):
                await wait_for(_at_least(second, 50), within=60, what="the second consuming")
                publishing = False
                await publisher
                await wait_for(
                    lambda: _handled_all(first + second, published),
                    within=60,
                    what="every event handled",
                )
        finally:
            publishing = False
            await publisher

    assert sorted(first + second) == sorted(published)  # each handled once, by one of the two
    assert duplicates() == 0


def _at_least(handled: list[str], count: int) -> Callable[[], Awaitable[bool]]:
    async def reached() -> bool:
        return len(handled) >= count

    return reached


async def _handled_all(handled: list[str], published: list[str]) -> bool:
    return len(handled) >= len(published)

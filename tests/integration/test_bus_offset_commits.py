"""When the consumer commits offsets: not after every batch while it is behind (each commit is a
request the broker serves), and all of them as soon as it has caught up."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

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

"""Batched publishing keeps aiokafka's placement: a key's events on the partition its default
partitioner picks, in order, and every accepted event on the topic exactly once."""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from libs.common import topics
from libs.common.bus.producer import _partition_of
from libs.common.bus.reader import header
from libs.devstack.stack import Stack
from tests.integration.ingest.support import CreatedSource, new_id
from tests.integration.support import read_topic

pytestmark = pytest.mark.integration

PEOPLE = 60
CALLS_PER_PERSON = 5
CONCURRENT_BATCHES = 6


def test_placement_is_the_default_partitioners_for_any_key_and_partition_count() -> None:
    partitioner = DefaultPartitioner()
    keys = [random.randbytes(random.randrange(0, 40)) for _ in range(5_000)]
    keys += [f"u_{n}".encode() for n in range(1_000)] + ["用户-7".encode()]
    for count in (1, 3, 12, 50):
        partitions = list(range(count))
        for key in keys:
            assert _partition_of(key, partitions) == partitioner(key, partitions, partitions)


async def test_concurrent_batches_land_each_event_once_on_its_keys_partition_in_order(
    client: httpx.AsyncClient, source: CreatedSource, stack: Stack
) -> None:
    run = new_id("person")
    people = [f"{run}-{n}" for n in range(PEOPLE)]
    # Each batch holds a run of calls per person, so a person's calls within it are ordered.
    batches: list[list[dict[str, Any]]] = [[] for _ in range(CONCURRENT_BATCHES)]
    for step in range(CALLS_PER_PERSON):
        for n, person in enumerate(people):
            call = {
                "type": "track",
                "userId": person,
                "event": "product_viewed",
                "messageId": f"{person}-{step}",
            }
            batches[n % CONCURRENT_BATCHES].append(call)

    answers = await asyncio.gather(
        *(client.post("/v1/batch", json={"batch": b}, auth=source.auth) for b in batches)
    )
    for answer, batch in zip(answers, batches, strict=True):
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == len(batch)

    sent = {call["messageId"] for batch in batches for call in batch}
    ours = [
        r
        for r in await read_topic(stack.kafka_bootstrap, topics.INGEST)
        if header(r, "ce_id") in sent
    ]
    assert Counter(header(r, "ce_id") for r in ours) == dict.fromkeys(sent, 1)
    records = {header(r, "ce_id"): r for r in ours}
    partitions = sorted(await _partitions_of(stack.kafka_bootstrap, topics.INGEST))
    partitioner = DefaultPartitioner()
    offsets: dict[str, list[int]] = defaultdict(list)
    for step in range(CALLS_PER_PERSON):
        for person in people:
            record = records[f"{person}-{step}"]
            assert record.key == person.encode()
            assert record.partition == partitioner(record.key, partitions, partitions)
            offsets[person].append(record.offset)
    assert all(found == sorted(found) for found in offsets.values())


async def _partitions_of(bootstrap: str, topic: str) -> set[int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        partitions: set[int] = await producer.partitions_for(topic)
        return partitions
    finally:
        await producer.stop()

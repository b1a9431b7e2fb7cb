"""The raw ceilings: plain aiokafka produce and consume, plain asyncpg inbox-shaped inserts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient

from bench.report import Rate
from libs.common.bus import ensure_topics

Message = tuple[bytes, bytes, list[tuple[str, bytes]]]
RecordsWork = Callable[[list[ConsumerRecord[bytes, bytes]]], None]


@dataclass(frozen=True)
class Ceilings:
    """The run's raw ceilings, measured once and compared with every scenario's figures."""

    produce: Rate
    consume: Rate
    inserts: Rate

    @classmethod
    def not_measured(cls) -> Ceilings:
        """For a run of scenarios that are not compared with the ceilings (no rate, no ratio)."""
        nothing = Rate("not measured", 0, 0.0)
        return cls(nothing, nothing, nothing)

    @property
    def consumer(self) -> Rate:
        """What a consumer of the bus pays at least: reading with commits, and inbox rows."""
        return min(self.consume, self.inserts, key=lambda rate: rate.per_second)


async def produce(bootstrap: str, topic: str, messages: Sequence[Message]) -> Rate:
    """Send every message, then await all acknowledgements (acks=all, as the bus does)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=2, max_batch_size=256 * 1024
    )
    await producer.start()
    try:
        started = time.perf_counter()
        acknowledgements = [
            await producer.send(topic, key=key, value=value, headers=headers)
            for key, value, headers in messages
        ]
        await asyncio.gather(*acknowledgements)
        return Rate("raw broker produce (aiokafka, acks=all)", len(messages), _since(started))
    finally:
        await producer.stop()


async def consume(
    bootstrap: str,
    topic: str,
    count: int,
    group: str,
    *,
    work: RecordsWork | None = None,
    name: str = "raw broker consume + commit (aiokafka)",
) -> Rate:
    """Read `count` messages as a consumer group, committing offsets after each poll; `work`,
    if given, is done on each partition's records before the commit."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=1000,
    )
    await consumer.start()
    try:
        seen = 0
        started = 0.0
        while seen < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
            if batches and not seen:
                started = time.perf_counter()  # from the first batch, as for the bus
            for records in batches.values():
                seen += len(records)
                if work is not None:
                    work(records)
            if batches:
                await consumer.commit({tp: rs[-1].offset + 1 for tp, rs in batches.items()})
        return Rate(name, seen, _since(started))
    finally:
        await consumer.stop()


async def inbox_inserts(dsn: str, count: int, batch_size: int) -> Rate:
    """Inbox-shaped rows (consumer, event id), a batch per transaction, one statement each."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "DROP TABLE IF EXISTS bench_raw_inbox; CREATE TABLE bench_raw_inbox ("
            "consumer text NOT NULL, event_id text NOT NULL, "
            "handled_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (consumer, event_id))"
        )
        statement = await connection.prepare(
            "INSERT INTO bench_raw_inbox (consumer, event_id) SELECT $1, unnest($2::text[]) "
            "ON CONFLICT DO NOTHING RETURNING event_id"
        )
        ids = [f"raw-{i:012d}-0000-0000-0000-000000000000" for i in range(count)]
        started = time.perf_counter()
        for first in range(0, count, batch_size):
            async with connection.transaction():
                await statement.fetch("bench", ids[first : first + batch_size])
        return Rate(
            f"raw PostgreSQL inbox inserts (asyncpg, {batch_size}/tx)", count, _since(started)
        )
    finally:
        await connection.execute("DROP TABLE IF EXISTS bench_raw_inbox")
        await connection.close()


def _since(started: float) -> float:
    return time.perf_counter() - started


async def empty_topic(bootstrap: str, topic: str, partitions: int = 12) -> None:
    """Delete the topic and create it again: a service's consumer group reads its topic from
    the earliest offset, so events other scenarios left there would be part of its work.

    (Committing the topic's end offsets for the group instead does not work on the embedded
    broker: its ListOffsets answered 1 for partitions holding ~250 records written as one
    batch.)
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic in await admin.list_topics():
            await admin.delete_topics([topic])
    finally:
        await admin.close()
    await ensure_topics(bootstrap, [topic], partitions, 1)

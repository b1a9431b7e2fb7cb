"""Reading a whole topic up to its current end: for the DLQ tools and for tests."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from libs.common.bus.record import KafkaRecord


async def read_to_end(
    consumer: AIOKafkaConsumer, topic: str, *, from_beginning: bool, within: float = 60.0
) -> list[KafkaRecord]:
    """Every message of `topic` up to its high watermark, from the consumer's committed position
    (or from the beginning). The consumer must be started; its partitions are assigned here.

    The end is the high watermark each fetch reports, not ListOffsets: the embedded broker
    answers ListOffsets with an offset short of the end, while fetches carry the true one.
    """
    await consumer.topics()  # loads metadata, so the topic's partitions are known
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(partitions)
    if from_beginning:
        await consumer.seek_to_beginning(*partitions)
    records: list[KafkaRecord] = []
    deadline = time.monotonic() + within
    while True:
        batches = await consumer.getmany(*partitions, timeout_ms=200)
        for batch in batches.values():
            records.extend(batch)
        if not batches and await _caught_up(consumer, partitions):
            return records
        if time.monotonic() > deadline:
            raise TimeoutError(f"{topic} was not read to its end within {within:.0f}s")


async def _caught_up(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> bool:
    for tp in partitions:
        highwater = consumer.highwater(tp)
        if highwater is None or await consumer.position(tp) < highwater:
            return False
    return True


def header(record: KafkaRecord, name: str) -> str:
    """A header's value as text ('' when absent)."""
    for key, value in record.headers:
        if key == name:
            return value.decode("utf-8", errors="replace")
    return ""

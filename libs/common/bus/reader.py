"""Reading a whole topic up to its current end: for the DLQ tools and for tests."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from libs.common.bus.record import KafkaRecord


async def read_to_end(
    consumer: AIOKafkaConsumer, topic: str, *, from_beginning: bool
) -> list[KafkaRecord]:
    """Every message of `topic` up to the end it has now, from the consumer's committed position
    (or from the beginning). The consumer must be started; its partitions are assigned here."""
    await consumer.topics()  # loads metadata, so the topic's partitions are known
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(partitions)
    if from_beginning:
        await consumer.seek_to_beginning(*partitions)
    ends = await consumer.end_offsets(partitions)
    records: list[KafkaRecord] = []
    while await _behind(consumer, ends):
        batches = await consumer.getmany(*partitions, timeout_ms=500)
        for tp, batch in batches.items():
            records.extend(record for record in batch if record.offset < ends[tp])
    return records


async def _behind(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return True
    return False


def header(record: KafkaRecord, name: str) -> str:
    """A header's value as text ('' when absent)."""
    for key, value in record.headers:
        if key == name:
            return value.decode("utf-8", errors="replace")
    return ""

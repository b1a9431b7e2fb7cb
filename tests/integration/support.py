"""Helpers the integration tests share: produce, read a topic back, wait for a condition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer

from libs.common.bus import EventProducer
from libs.common.bus.reader import read_to_end
from libs.common.bus.record import KafkaRecord
from libs.common.events import Event, EventDecodeError, decode
from libs.common.settings import Settings


async def wait_for(
    condition: Callable[[], Awaitable[bool]], *, within: float, what: str, every: float = 0.1
) -> None:
    """Poll `condition` until it holds; fail naming `what` when the deadline passes."""
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f}s waiting for {what}")
        await asyncio.sleep(every)


async def publish(bootstrap: str, events: Sequence[Event[Any]], topic: str | None = None) -> None:
    """Publish events (to `topic` instead of each event's own topic when given)."""
    producer = EventProducer(Settings(kafka_bootstrap=bootstrap, kafka_idempotence=False))
    await producer.start()
    try:
        if topic is None:
            await producer.publish(events)
            return
        acknowledgements = [
            await producer.send(topic, event.key.encode(), event.value(), event.headers())
            for event in events
        ]
        await producer.wait_all(acknowledgements)
    finally:
        await producer.stop()


async def publish_raw(bootstrap: str, topic: str, key: bytes, value: bytes, headers: Any) -> None:
    producer = EventProducer(Settings(kafka_bootstrap=bootstrap, kafka_idempotence=False))
    await producer.start()
    try:
        await producer.wait_all([await producer.send(topic, key, value, headers)])
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str) -> list[KafkaRecord]:
    """Every message on a topic now, from the beginning (no consumer group, nothing committed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return await read_to_end(consumer, topic, from_beginning=True)
    finally:
        await consumer.stop()


async def read_events(bootstrap: str, topic: str) -> list[tuple[KafkaRecord, Event[Any]]]:
    """The messages on a topic that are events, with their records, by partition and offset.

    The topics are shared by the whole test session, and tests/integration/hostile puts
    undecodable messages on every one of them on purpose: those are skipped.
    """
    found = []
    for record in sorted(await read_topic(bootstrap, topic), key=lambda r: (r.partition, r.offset)):
        try:
            found.append((record, decode(record.key, record.value, record.headers)))
        except EventDecodeError:
            continue
    return found

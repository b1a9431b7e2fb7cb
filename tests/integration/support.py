"""Helpers the integration tests share: produce, read a topic back, wait for a condition."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.common.bus import BatchHandler, EventConsumer, EventProducer, ensure_topics
from libs.common.bus.reader import read_to_end
from libs.common.bus.record import KafkaRecord
from libs.common.bus.tables import create_bus_schema
from libs.common.db import Sessions, create_engine, create_sessions, upgrade
from libs.common.events import Event, EventDecodeError, decode
from libs.common.events.behavior import BehaviorOccurred
from libs.common.settings import Settings
from libs.devstack.pytest_plugin import ServiceLauncher, SettingsFactory
from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack
from tests.events import behaviour


@contextlib.asynccontextmanager
async def migrated_service_schema(
    settings_factory: SettingsFactory, name: str, migrations: Path
) -> AsyncIterator[tuple[Sessions, str]]:
    """A service's schema under a fresh name, migrated to head: its sessions and the schema's
    name; dropped afterwards."""
    config = settings_factory(service_name=f"{name}_{uuid.uuid4().hex[:8]}")
    await asyncio.to_thread(upgrade, config, migrations)
    engine = create_engine(config)
    try:
        yield create_sessions(engine), config.schema_name
    finally:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP SCHEMA {config.schema_name} CASCADE"))
        await engine.dispose()


@contextlib.asynccontextmanager
async def started_service(
    stack: Stack, logs: Path, service: str, env: dict[str, str]
) -> AsyncIterator[tuple[ServiceProcess, str]]:
    """`services.<service>` running as `<service>_<run>` with its schema migrated and `env`,
    its logs under `logs`: the process and the run's id; stopped afterwards."""
    launcher = ServiceLauncher(stack, logs)
    run = uuid.uuid4().hex[:8]
    try:
        process = await launcher(
            f"services.{service}", name=f"{service}_{run}", migrate=True, env=env, ready_timeout=60
        )
        yield process, run
    finally:
        await launcher.stop_all()


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


@dataclass
class ThrowawayBus:
    """A consumer's settings, its bus tables in a schema of its own, and a topic of its own."""

    settings: Settings
    engine: AsyncEngine
    topic: str


@contextlib.asynccontextmanager
async def throwaway_bus(
    kafka_bootstrap: str, database_url: str, name: str, **settings: Any
) -> AsyncIterator[ThrowawayBus]:
    """Settings for a test consumer named `name`, its inbox/outbox schema and a fresh
    12-partition topic; the schema is dropped afterwards."""
    run_id = uuid.uuid4().hex[:10]
    bus_settings = Settings(
        service_name=f"{name}_{run_id}",
        kafka_bootstrap=kafka_bootstrap,
        kafka_idempotence=False,
        kafka_session_timeout_ms=6000,
        database_url=database_url,
        **settings,
    )
    engine = create_engine(bus_settings)
    await create_bus_schema(engine, bus_settings.schema_name)
    topic = f"closeloop.test.{name}-{run_id}"
    await ensure_topics(kafka_bootstrap, [topic], 12, 1)
    try:
        yield ThrowawayBus(bus_settings, engine, topic)
    finally:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP SCHEMA {bus_settings.schema_name} CASCADE"))
        await engine.dispose()


@contextlib.asynccontextmanager
async def consuming(
    bus: ThrowawayBus, handler: BatchHandler, **settings: Any
) -> AsyncIterator[EventConsumer]:
    """A consumer of the bus's topic with `handler` (and its producer), started; `settings`
    over the bus's own."""
    consumer_settings = bus.settings.model_copy(update=settings)
    producer = EventProducer(consumer_settings)
    consumer = EventConsumer(
        consumer_settings,
        topics=[bus.topic],
        handler=handler,
        engine=bus.engine,
        producer=producer,
    )
    await producer.start()
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()
        await producer.stop()


def one_key_behaviours(count: int, profile_id: str) -> list[Event[BehaviorOccurred]]:
    """`count` behaviours of one person: one key, so one partition, and a consumer that joins
    after they were published gets them all in its first batch."""
    return [behaviour(profile_id) for _ in range(count)]

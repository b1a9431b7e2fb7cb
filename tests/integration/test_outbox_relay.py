"""The outbox relay publishes in per-key order, loses nothing when killed, and leads alone."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from libs.common import topics
from libs.common.bus import EventProducer, OutboxRelay, write_outbox
from libs.common.bus.reader import header
from libs.common.bus.tables import create_bus_schema
from libs.common.db import create_engine, create_sessions
from libs.common.events import Event, decode
from libs.common.events.profile import ProfileChange, ProfileUpdated
from libs.common.settings import Settings
from libs.devstack.stack import Stack
from tests.integration.conftest import MakeCounter
from tests.integration.support import read_topic, wait_for

pytestmark = pytest.mark.integration

KEYS = 20
EVENTS_PER_KEY = 500
EVENTS_PER_TRANSACTION = 10


def _numbered(run_id: str, key: int, sequence: int) -> Event[ProfileUpdated]:
    profile = f"{run_id}-k{key}"
    return Event(
        data=ProfileUpdated(
            profile_id=profile,
            changes=[ProfileChange(field="features.sequence", after=sequence)],
            occurred_at=datetime.now(UTC),
        ),
        key=profile,
        source="closeloop/tests",
    )


async def _fill_outbox(session: AsyncSession, schema: str, run_id: str) -> None:
    interleaved = [
        _numbered(run_id, key, sequence)
        for sequence in range(EVENTS_PER_KEY)
        for key in range(KEYS)
    ]
    for first in range(0, len(interleaved), EVENTS_PER_TRANSACTION):
        async with session.begin():
            await write_outbox(session, schema, interleaved[first : first + EVENTS_PER_TRANSACTION])


async def test_relay_killed_mid_way_keeps_per_key_order_and_loses_nothing(
    stack: Stack, counter_service: MakeCounter
) -> None:
    total = KEYS * EVENTS_PER_KEY
    counter = counter_service(outbox_batch_rows=5)
    await counter.process.migrate()
    engine = create_engine(Settings(database_url=stack.database_url, service_name=counter.name))
    async with create_sessions(engine)() as session:
        await _fill_outbox(session, counter.name, counter.run_id)
    await engine.dispose()
    assert await counter.outbox_backlog() == total

    await counter.start()

    async def partly_published() -> bool:
        return 0 < await counter.outbox_backlog() < total * 0.8

    await wait_for(partly_published, within=60, what="the relay part-way through", every=0.02)
    assert await counter.process.kill() == -9
    left_at_kill = await counter.outbox_backlog()
    assert left_at_kill > 0

    counter.process.start()
    await counter.process.wait_ready(timeout=60)

    async def drained() -> bool:
        return await counter.outbox_backlog() == 0

    await wait_for(drained, within=120, what="the restarted relay to drain the outbox")
    published, distinct = await _assert_complete_and_in_order(stack, counter.run_id)
    print(
        f"\noutbox={total} left_at_kill={left_at_kill} published={published} "
        f"distinct={distinct} republished_after_crash={published - distinct}"
    )


async def test_two_relays_take_turns_and_the_second_takes_over_when_the_first_stops(
    stack: Stack,
) -> None:
    run_id = uuid.uuid4().hex[:10]
    settings = Settings(
        service_name=f"relay_{run_id}",
        database_url=stack.database_url,
        kafka_bootstrap=stack.kafka_bootstrap,
        kafka_idempotence=False,
    )
    engine = create_engine(settings)
    await create_bus_schema(engine, settings.schema_name)
    async with create_sessions(engine)() as session:
        await _fill_outbox(session, settings.schema_name, run_id)
    producer = EventProducer(settings)
    await producer.start()
    replicas = [
        OutboxRelay(engine, producer, settings.schema_name, batch_size=2, poll_interval_ms=50)
        for _ in range(2)
    ]
    try:
        for relay in replicas:
            await relay.start()
        both_led = False

        async def one_leads() -> bool:
            nonlocal both_led
            both_led = both_led or all(relay.leading for relay in replicas)
            return any(relay.leading for relay in replicas)

        await wait_for(one_leads, within=30, what="a relay to lead", every=0.01)
        first = next(relay for relay in replicas if relay.leading)
        await first.stop()
        second = next(relay for relay in replicas if relay is not first)

        async def drained_by_the_second() -> bool:
            nonlocal both_led
            both_led = both_led or all(relay.leading for relay in replicas)
            return await _backlog(engine, settings.schema_name) == 0

        await wait_for(drained_by_the_second, within=120, what="the second relay to drain")
        assert not both_led, "two relays published at the same time"
        assert second.leading
    finally:
        for relay in replicas:
            await relay.stop()
        await producer.stop()
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP SCHEMA {settings.schema_name} CASCADE"))
        await engine.dispose()
    await _assert_complete_and_in_order(stack, run_id)


async def _backlog(engine: AsyncEngine, schema: str) -> int:
    async with engine.connect() as connection:
        result = await connection.execute(
            text(f"SELECT coalesce(sum(events), 0) FROM {schema}.outbox")
        )
        return int(result.scalar_one())


async def _assert_complete_and_in_order(stack: Stack, run_id: str) -> tuple[int, int]:
    """Every event of the run is on the topic, and each key's first copies are in order."""
    mine = [
        record
        for record in await read_topic(stack.kafka_bootstrap, topics.PROFILE)
        if record.key and record.key.decode().startswith(f"{run_id}-k")
    ]
    first_copies: dict[str, list[int]] = defaultdict(list)
    seen: set[str] = set()
    for record in mine:
        event_id = header(record, "ce_id")
        if event_id in seen:
            continue
        seen.add(event_id)
        updated = decode(record.key, record.value, record.headers).data
        assert isinstance(updated, ProfileUpdated)
        first_copies[updated.profile_id].append(int(updated.changes[0].after))
    assert len(seen) == KEYS * EVENTS_PER_KEY, "events were lost"
    for profile, sequences in first_copies.items():
        assert sequences == list(range(EVENTS_PER_KEY)), f"{profile} out of order"
    return len(mine), len(seen)

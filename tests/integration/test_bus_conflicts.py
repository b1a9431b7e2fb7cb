"""A batch rolled back by a deadlock with another transaction is run again, not dead-lettered.

Replicas lock the rows their batches change; two of them can deadlock, and PostgreSQL then
fails one transaction. Here the handler really deadlocks with a second connection, twice: once
with the whole batch, once with the first event handled on its own (with one attempt allowed,
a failed batch is split up to find the poison). Nothing is wrong with the events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import pytest
import pytest_asyncio

from libs.common import topics
from libs.common.bus import Batch, dlq
from libs.common.bus.driver import driver_connection
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

EVENTS = 20
DEADLOCKS = 2


@dataclass
class DeadlockingHandler:
    """Deadlocks with another connection on its first `DEADLOCKS` calls, then applies."""

    dsn: str
    table: str
    calls: int = 0
    deadlocks: int = 0
    applied: set[str] = field(default_factory=set)
    others: list[asyncio.Task[None]] = field(default_factory=list)

    async def handle(self, batch: Batch) -> None:
        self.calls += 1
        if self.calls <= DEADLOCKS:
            await self._deadlock(await driver_connection(batch.session))
        self.applied.update(event.id for event in batch.events)

    async def _deadlock(self, connection: asyncpg.Connection) -> None:
        """Row 1 here, row 2 there; then each asks for the other's. PostgreSQL checks for a
        deadlock once per wait, `deadlock_timeout` after it began, and fails the side whose check
        finds the cycle: this side checks after 5 s, by when the other waits too, and the other
        side only after a minute, so this side is the one failed however slow the machine is."""
        await connection.execute("SET LOCAL deadlock_timeout = '5s'")
        other = await asyncpg.connect(self.dsn)
        await other.execute("SET deadlock_timeout = '60s'")
        transaction = other.transaction()
        await transaction.start()
        await other.execute(f"SELECT FROM {self.table} WHERE id = 2 FOR UPDATE")
        pid = await connection.fetchval("SELECT pg_backend_pid()")
        await connection.execute(f"SELECT FROM {self.table} WHERE id = 1 FOR UPDATE")
        self.others.append(asyncio.create_task(self._other_side(other, transaction, pid)))
        try:
            await connection.execute(f"SELECT FROM {self.table} WHERE id = 2 FOR UPDATE")
        except asyncpg.DeadlockDetectedError:
            self.deadlocks += 1
            raise

    async def _other_side(
        self,
        other: asyncpg.Connection,
        transaction: asyncpg.transaction.Transaction,
        waiting_pid: int,
    ) -> None:
        try:

            async def handler_waits() -> bool:
                state = await other.fetchval(
                    "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", waiting_pid
                )
                return bool(state == "Lock")

            await wait_for(handler_waits, within=30, what="the handler waiting for row 2")
            await other.execute(f"SELECT FROM {self.table} WHERE id = 1 FOR UPDATE")
            await transaction.rollback()
        finally:
            await other.close()


@pytest_asyncio.fixture(loop_scope="session")
async def bus(stack: Stack) -> AsyncIterator[Bus]:
    async with throwaway_bus(
        stack.kafka_bootstrap,
        stack.database_url,
        "conflicts",
        handler_max_attempts=1,
        handler_retry_backoff_ms=20,
    ) as created:
        yield created


async def test_a_batch_failed_by_a_deadlock_runs_again_and_nothing_is_dead_lettered(
    stack: Stack, bus: Bus
) -> None:
    dsn = stack.database_url.replace("postgresql+asyncpg://", "postgresql://")
    table = f"{bus.settings.schema_name}.deadlock_rows"
    setup = await asyncpg.connect(dsn)
    try:
        await setup.execute(
            f"CREATE TABLE {table} (id int PRIMARY KEY); INSERT INTO {table} VALUES (1), (2)"
        )
    finally:
        await setup.close()
    handler = DeadlockingHandler(dsn, table)
    events = one_key_behaviours(EVENTS, "prf_conflicts")
    await publish(stack.kafka_bootstrap, events, topic=bus.topic)
    try:
        async with consuming(bus, handler.handle):

            async def all_applied() -> bool:
                return handler.applied == {event.id for event in events}

            await wait_for(all_applied, within=60, what="every event applied")
    finally:
        await asyncio.gather(*handler.others, return_exceptions=True)
    assert handler.deadlocks == DEADLOCKS, "the deadlocks really happened"
    letters = [
        record
        for record in await read_topic(stack.kafka_bootstrap, topics.DLQ)
        if header(record, dlq.SOURCE_TOPIC) == bus.topic
    ]
    assert letters == [], "dead-lettered: a deadlock says nothing about the events"

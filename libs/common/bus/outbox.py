"""The transactional outbox: events written with the state that caused them, published in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from libs.common import metrics
from libs.common.bus.driver import driver_connection, raw_driver_connection
from libs.common.bus.producer import EventProducer, Message
from libs.common.db import checked_schema
from libs.common.events import Event
from libs.common.events.envelope import attribute_headers, event_value
from libs.common.lifecycle import BackgroundLoop

_log = logging.getLogger(__name__)
_BACKLOG_REFRESH_SECONDS = 5.0
_LEADERSHIP_CHECK_SECONDS = 1.0
_LOCK_RELEASE_SECONDS = 5.0
_RETRY_BACKOFF_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)
# Between the parts of an outbox row (see `pack_messages`): JSON escapes it inside strings.
RECORD_SEPARATOR = b"\x1e"


async def write_outbox(session: AsyncSession, schema: str, events: Sequence[Event[Any]]) -> None:
    """Add events to the outbox inside the caller's transaction, as one row for the batch.

    One row per transaction rather than per event: the outbox then costs PostgreSQL one small
    insert per batch, and the order of the events inside the row is the order they are sent in.
    """
    if not events:
        return
    connection = await driver_connection(session)
    await connection.execute(
        f"INSERT INTO {checked_schema(schema)}.outbox (events, messages) VALUES ($1, $2)",
        len(events),
        pack_messages(events),
    )


def pack_messages(events: Sequence[Event[Any]]) -> bytes:
    """The events as Kafka messages will be made of them, in order, for one outbox row.

    `RECORD_SEPARATOR`, then a JSON array of each event's attributes (topic, key, type,
    version, id, source, time, traceparent), then each event's JSON value, each after another
    `RECORD_SEPARATOR`: a byte that JSON text never holds unescaped. The headers are made by
    the relay (`unpack_messages`); the values are stored as serialised, not escaped again.
    """
    attributes = []
    last_time, time_text = None, ""
    for event in events:
        data = event.data
        if event.time is not last_time:  # a batch's events often share one time: format it once
            last_time, time_text = event.time, event.time.isoformat()
        attributes.append(
            (
                data.topic,
                event.key,
                data.event_type,
                data.event_version,
                event.id,
                event.source,
                time_text,
                event.traceparent,
            )
        )
    values = [event_value(event.data) for event in events]
    return RECORD_SEPARATOR + RECORD_SEPARATOR.join([orjson.dumps(attributes), *values])


async def _close_after_failure(connection: AsyncConnection) -> None:
    with contextlib.suppress(Exception):
        await asyncio.shield(connection.invalidate())


def unpack_messages(packed: bytes) -> list[Message]:
    """The messages `pack_messages` packed, ready to publish; also rows written before it packed
    this way (a JSON array of [topic, key, type, headers, value] each), during an upgrade."""
    if not packed.startswith(RECORD_SEPARATOR):
        return _unpack_json_messages(packed)
    attributes, *values = packed[1:].split(RECORD_SEPARATOR)
    return [
        Message(
            topic,
            key.encode(),
            value,
            attribute_headers(event_type, version, event_id, source, time_text, traceparent),
            event_type,
        )
        for (
            topic,
            key,
            event_type,
            version,
            event_id,
            source,
            time_text,
            traceparent,
        ), value in zip(orjson.loads(attributes), values, strict=True)
    ]


def _unpack_json_messages(packed: bytes) -> list[Message]:
    return [
        Message(
            topic,
            key.encode(),
            value.encode(),
            [(name, header.encode()) for name, header in headers.items()],
            event_type,
        )
        for topic, key, event_type, headers, value in orjson.loads(packed)
    ]


class OutboxRelay(BackgroundLoop):
    """Publishes a service's outbox to Kafka in id order, then deletes what Kafka acknowledged.

    One relay per schema is active at a time (a PostgreSQL advisory lock elects it), so
    replicas never interleave and per-key order holds. A crash between Kafka's acknowledgement
    and the delete republishes those rows: a duplicate that every consumer's inbox skips.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        producer: EventProducer,
        schema: str,
        *,
        batch_size: int = 20,
        poll_interval_ms: int = 200,
    ) -> None:
        self.name = f"outbox-relay:{schema}"
        self._engine = engine
        self._producer = producer
        self._schema = checked_schema(schema)
        self._batch_size = batch_size
        self._poll_interval = poll_interval_ms / 1000
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._backlog_checked_at = 0.0
        self._leadership_confirmed_at = 0.0
        # Oldest first; FOR UPDATE makes a second relay wait rather than publish the same rows.
        self._take_oldest = (
            f"DELETE FROM {self._schema}.outbox WHERE id IN "
            f"(SELECT id FROM {self._schema}.outbox ORDER BY id LIMIT $1 FOR UPDATE) "
            "RETURNING id, messages"
        )
        self.leading = False

    def notify(self) -> None:
        """Something was written to the outbox: publish it now rather than at the next poll."""
        self._wakeup.set()

    async def start(self) -> None:
        self._stopping = False
        await super().start()

    async def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()
        await super().stop()

    async def drain(self) -> int:
        """Publish everything in the outbox now (the caller must hold leadership or be alone)."""
        total = 0
        while published := await self._publish_batch():
            total += published
        return total

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            try:
                async with self._engine.connect() as lock_connection:
                    if await self._try_lead(lock_connection):
                        attempt = 0
                        self.leading = True
                        try:
                            await self._relay_while_leader(lock_connection)
                        finally:
                            self.leading = False
                            await self._give_up_leadership(lock_connection)
                    else:
                        await self._wait(self._poll_interval * 5)
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = _RETRY_BACKOFF_SECONDS[min(attempt, len(_RETRY_BACKOFF_SECONDS) - 1)]
                attempt += 1
                _log.exception("outbox relay failed; retrying", extra={"schema": self._schema})
                await asyncio.sleep(delay)

    async def _try_lead(self, connection: AsyncConnection) -> bool:
        result = await connection.execute(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": self._lock_key()}
        )
        await connection.commit()
        return bool(result.scalar_one())

    async def _give_up_leadership(self, lock_connection: AsyncConnection) -> None:
        """Release the advisory lock before the connection goes back to the pool: the lock is
        the session's, so a pooled connection would keep holding it, and no replica (this one
        included, on another pooled connection) could lead until that connection was closed.
        A connection that cannot release it is closed instead, which releases it too."""
        try:
            async with asyncio.timeout(_LOCK_RELEASE_SECONDS):
                await lock_connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": self._lock_key()}
                )
                await lock_connection.commit()
        except Exception:
            with contextlib.suppress(Exception):
                await lock_connection.invalidate()

    def _lock_key(self) -> int:
        # A stable 63-bit key per schema: crc32 is enough to keep the seven schemas apart.
        return zlib.crc32(f"closeloop.outbox.{self._schema}".encode())

    async def _relay_while_leader(self, lock_connection: AsyncConnection) -> None:
        while not self._stopping:
            await self._confirm_leadership(lock_connection)
            published = await self._publish_batch()
            if published < self._batch_size:
                await self._wait(self._poll_interval)

    async def _publish_batch(self) -> int:
        """Take the oldest rows, publish their messages, and delete them: one statement and one
        transaction. A failed publish rolls the transaction back, so the rows are taken again.
        """
        async with self._engine.connect() as connection:
            driver = await raw_driver_connection(connection)
            try:
                async with driver.transaction():
                    rows = sorted(await driver.fetch(self._take_oldest, self._batch_size))
                    if not rows:
                        return 0
                    await self._producer.publish_messages(
                        [message for _, packed in rows for message in unpack_messages(packed)]
                    )
            except BaseException:
                # The transaction is the driver's, not SQLAlchemy's: the pool's rollback on
                # return does not know of it. One cut short (a stop cancelling the relay
                # mid-statement leaves asyncpg unable to roll back) would go back to the pool
                # still open, holding its taken rows locked, and the next leader's DELETE
                # would wait on them for ever. Closing the connection ends it on the server.
                await _close_after_failure(connection)
                raise
        return len(rows)

    async def _confirm_leadership(self, lock_connection: AsyncConnection) -> None:
        """The advisory lock lives as long as this connection: if it broke, another replica may
        lead now, so a failure here must end this leadership (the caller reconnects).

        Checked at most once a second, not before every batch (two round trips each): until a
        broken lock is noticed, two relays may both publish, but the row locks of
        `_take_oldest` still hand them the rows one batch after another, in id order.
        """
        now = time.monotonic()
        if now - self._leadership_confirmed_at < _LEADERSHIP_CHECK_SECONDS:
            return
        self._leadership_confirmed_at = now
        if now - self._backlog_checked_at < _BACKLOG_REFRESH_SECONDS:
            await lock_connection.execute(text("SELECT 1"))
        else:
            self._backlog_checked_at = now
            backlog = await lock_connection.execute(
                text(f"SELECT coalesce(sum(events), 0) FROM {self._schema}.outbox")
            )
            metrics.OUTBOX_BACKLOG.labels(self._schema).set(backlog.scalar_one())
        await lock_connection.commit()

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout=seconds)
        self._wakeup.clear()

"""A batch's transaction: claim its events in the inbox, hand the new ones to the handler, and
write what it emits to the outbox, all in one database transaction."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from libs.common import metrics
from libs.common.bus.batch import Batch, BatchHandler
from libs.common.bus.inbox import claim_new_events
from libs.common.bus.outbox import OutboxRelay, write_outbox
from libs.common.bus.record import KafkaRecord
from libs.common.db import checked_schema, is_transaction_conflict, session_transaction
from libs.common.events import Event
from libs.common.settings import Settings
from libs.common.tracing import batch_spans

# The consumer's log lines keep the logger name they have always had.
_log = logging.getLogger("libs.common.bus.consumer")

# A transaction PostgreSQL rolled back because of another one (a deadlock, a serialization
# failure) is run again this many times before it counts as the batch failing.
_CONFLICT_RERUNS = 5
_PROBE_SECONDS = 5


class BatchTransaction:
    """Runs a consumer's handler on decoded events, exactly once per event.

    The inbox claim makes a redelivered event a no-op; the outbox makes what the handler emits
    part of the same transaction, published by the relay once it commits.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        group: str,
        handler: BatchHandler,
        engine: AsyncEngine,
        relay: OutboxRelay | None,
    ) -> None:
        self._settings = settings
        self._group = group
        self._handler = handler
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._schema = checked_schema(settings.schema_name)
        self._relay = relay

    async def run(self, decoded: Sequence[tuple[KafkaRecord, Event[Any]]]) -> None:
        """Run the batch's transaction again when PostgreSQL rolled it back for a conflict with
        another transaction: nothing is wrong with its events, and a rerun goes through (a
        deadlock between two replicas' batches fails one of them, for instance)."""
        for rerun in range(_CONFLICT_RERUNS + 1):
            try:
                await self._transact(decoded)
                return
            except Exception as error:
                if rerun == _CONFLICT_RERUNS or not is_transaction_conflict(error):
                    raise
                metrics.BATCH_RETRIES.labels(self._group).inc()
                _log.warning(
                    "transaction rolled back by a conflict with another; running it again",
                    extra={"group": self._group, "error": str(error)},
                )
                await asyncio.sleep(self._settings.handler_retry_backoff_ms / 1000 * rerun)

    async def _transact(self, decoded: Sequence[tuple[KafkaRecord, Event[Any]]]) -> None:
        events = [event for _, event in decoded]
        with batch_spans(self._group, events) as traces:
            async with session_transaction(self._sessions) as session:
                # Claim: the events this consumer has not handled before.
                fresh = await claim_new_events(session, self._schema, self._group, events)
                batch = Batch(fresh, session, traces=traces)
                if fresh:
                    await self._handler(batch)  # handle
                    await write_outbox(session, self._schema, batch.emitted)  # emit, on commit
        if batch.emitted and self._relay is not None:
            self._relay.notify()
        count_consumed(self._group, decoded, fresh)

    async def database_answers(self) -> bool:
        """Whether the database answers at all: if not, a failing batch says nothing about its
        events."""
        try:
            async with asyncio.timeout(_PROBE_SECONDS), self._engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:
            return False
        return True


def count_consumed(
    group: str, decoded: Sequence[tuple[KafkaRecord, Event[Any]]], fresh: list[Event[Any]]
) -> None:
    """Count a handled batch's events as consumed, or as duplicates the inbox skipped."""
    # Counted per (topic, type) first: one labelled increment each, not one per event.
    consumed: collections.Counter[tuple[str, str]] = collections.Counter()
    duplicates: collections.Counter[str] = collections.Counter()
    if len(fresh) == len(decoded):  # nothing seen before: the usual batch
        consumed.update((record.topic, event.data.event_type) for record, event in decoded)
    else:
        fresh_ids = {event.id for event in fresh}
        for record, event in decoded:
            if event.id in fresh_ids:
                fresh_ids.discard(event.id)
                consumed[record.topic, event.type] += 1
            else:
                duplicates[record.topic] += 1
    for (topic, event_type), count in consumed.items():
        metrics.EVENTS_CONSUMED.labels(group, topic, event_type).inc(count)
    for topic, count in duplicates.items():
        metrics.EVENTS_DUPLICATE.labels(group, topic).inc(count)

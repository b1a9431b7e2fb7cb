"""The inbox: which events a consumer has handled, so a redelivered event is skipped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from libs.common.bus.driver import driver_connection
from libs.common.db import checked_schema
from libs.common.events import Event
from libs.common.lifecycle import BackgroundLoop

_log = logging.getLogger(__name__)


async def claim_new_events(
    session: AsyncSession, schema: str, consumer: str, events: Sequence[Event[Any]]
) -> list[Event[Any]]:
    """Record the batch's event ids in the caller's transaction; return the events not seen before.

    One statement for the whole batch. An id twice in the batch counts once (its first copy).
    """
    if not events:
        return []
    connection = await driver_connection(session)
    rows = await connection.fetch(
        f"INSERT INTO {checked_schema(schema)}.inbox (consumer, event_id) "
        "SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING RETURNING event_id",
        consumer,
        [event.id for event in events],
    )
    if len(rows) == len(events):  # every id went in, so each was new and came once
        return list(events)
    new_ids = {row[0] for row in rows}
    fresh: list[Event[Any]] = []
    for event in events:
        if event.id in new_ids:
            new_ids.discard(event.id)
            fresh.append(event)
    return fresh


class InboxRetention(BackgroundLoop):
    """Forgets handled event ids once no redelivery can bring them back.

    Kafka redelivers only what is still on a topic, so ids older than the topics' retention
    (7 days by default) can never come back; keeping them longer only grows the table.
    """

    def __init__(
        self, engine: AsyncEngine, schema: str, *, keep_hours: int, every_seconds: float = 600.0
    ) -> None:
        self.name = f"inbox-retention:{schema}"
        self._engine = engine
        self._schema = checked_schema(schema)
        self._keep_hours = keep_hours
        self._every_seconds = every_seconds

    async def forget_expired(self) -> int:
        async with self._engine.begin() as connection:
            result = await connection.execute(
                text(
                    f"DELETE FROM {self._schema}.inbox "
                    "WHERE handled_at < now() - make_interval(hours => :hours)"
                ),
                {"hours": self._keep_hours},
            )
        return int(result.rowcount)

    async def _run(self) -> None:
        while True:
            try:
                forgotten = await self.forget_expired()
                if forgotten:
                    _log.info("inbox ids forgotten", extra={"count": forgotten})
            except Exception:
                _log.exception("inbox retention failed; will try again")
            await asyncio.sleep(self._every_seconds)

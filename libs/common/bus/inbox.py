"""The inbox: which events a consumer has handled, so a redelivered event is skipped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.bus.driver import driver_connection
from libs.common.db import checked_schema
from libs.common.events import Event
from libs.common.retention import Retained, batched_delete, older_than
from libs.common.store import schema_statement


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


def inbox_retained(schema: str, keep_hours: float) -> Retained:
    """Handled event ids kept `keep_hours`, then forgotten.

    Kafka redelivers only what is still on a topic, so ids older than the topics' retention
    can never come back; keeping them longer only grows the table. `Settings` refuses a
    period not longer than `topic_retention_hours`.
    """
    statement = schema_statement(
        batched_delete("inbox", older_than("handled_at")), checked_schema(schema)
    )

    async def forget(session: AsyncSession, limit: int) -> int:
        result = await session.execute(statement, {"seconds": keep_hours * 3600, "limit": limit})
        return int(cast("CursorResult[Any]", result).rowcount or 0)

    return Retained("inbox", forget)

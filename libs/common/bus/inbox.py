"""The inbox: which events a consumer has handled, so a redelivered event is skipped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.bus.driver import driver_connection
from libs.common.db import checked_schema
from libs.common.events import Event


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
    new_ids = {row[0] for row in rows}
    fresh: list[Event[Any]] = []
    for event in events:
        if event.id in new_ids:
            new_ids.discard(event.id)
            fresh.append(event)
    return fresh

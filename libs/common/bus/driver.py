"""The asyncpg connection under a SQLAlchemy session, for the bus's per-batch statements.

The inbox and outbox statements run once per batch with arrays of hundreds of values; asyncpg
binds those arrays natively, which SQLAlchemy's parameter processing would do value by value.
The statements still run on the session's connection, inside the handler's transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession


async def driver_connection(session: AsyncSession) -> Any:
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection

"""The asyncpg connection under a SQLAlchemy session, for the bus's per-batch statements.

The inbox and outbox statements run once per batch with arrays of hundreds of values; asyncpg
binds those arrays natively, which SQLAlchemy's parameter processing would do value by value.
The statements must run inside the session's transaction, so the transaction is made to exist
on the driver's connection first.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def driver_connection(session: AsyncSession) -> Any:
    """The asyncpg connection of the session, in the session's open transaction."""
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    if driver is None:
        raise RuntimeError("the session's connection has no driver connection")
    if not driver.is_in_transaction():
        # SQLAlchemy sends BEGIN lazily, with its first statement: without one, a statement
        # sent straight to asyncpg would autocommit outside the transaction.
        await session.execute(text("SELECT 1"))
    if not driver.is_in_transaction():
        raise RuntimeError("the session has no open transaction on its connection")
    return driver

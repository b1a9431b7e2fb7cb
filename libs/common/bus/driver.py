"""The asyncpg connection under a SQLAlchemy session, for the bus's per-batch statements.

The inbox and outbox statements run once per batch with arrays of hundreds of values; asyncpg
binds those arrays natively, which SQLAlchemy's parameter processing would do value by value.
The statements must run inside the session's transaction, so the transaction is made to exist
on the driver's connection first.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession


async def driver_connection(session: AsyncSession) -> Any:
    """The asyncpg connection of the session, in the session's open transaction."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    if driver is None:
        raise RuntimeError("the session's connection has no driver connection")
    if not driver.is_in_transaction():
        # SQLAlchemy sends BEGIN lazily, with its first statement: without one, a statement
        # sent straight to asyncpg would autocommit outside the transaction.
        await _begin(session, raw.dbapi_connection)
    if not driver.is_in_transaction():
        raise RuntimeError("the session has no open transaction on its connection")
    return driver


async def raw_driver_connection(connection: AsyncConnection) -> Any:
    """The asyncpg connection under a SQLAlchemy connection, for statements of its own."""
    driver = (await connection.get_raw_connection()).driver_connection
    if driver is None:
        raise RuntimeError("the connection has no driver connection")
    return driver


async def _begin(session: AsyncSession, adapted: Any) -> None:
    """BEGIN the way SQLAlchemy's asyncpg adapter does before its first statement, without a
    statement: a `SELECT 1` for it cost every consumer batch a round trip of its own.

    The adapter's method is internal (SQLAlchemy is pinned); should it change, the statement
    is the fallback, so a new version can cost a round trip but never the transaction.
    """
    start = getattr(adapted, "_start_transaction", None)
    mutex = getattr(adapted, "_execute_mutex", None)
    if start is None or mutex is None or getattr(adapted, "_transaction", True) is not None:
        await session.execute(text("SELECT 1"))
        return
    async with mutex:
        if adapted._transaction is None:
            await start()

"""The services' database pool: a connection PostgreSQL closed while it sat idle is replaced
unseen; one closed while in steady use fails once, and the pool recovers."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.common import db
from libs.common.settings import Settings
from libs.devstack.stack import Stack

pytestmark = pytest.mark.integration


def _engine(stack: Stack) -> AsyncEngine:
    settings = Settings(
        database_url=stack.database_url, service_name="pool_test", database_pool_size=1
    )
    return db.create_engine(settings)


async def _backend_of(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _terminate(stack: Stack, pid: int) -> None:
    other = _engine(stack)
    try:
        async with other.connect() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        await other.dispose()


async def _closed_after_use(stack: Stack, engine: AsyncEngine) -> int:
    """Use one of the engine's connections, return it to the pool, then have PostgreSQL end
    its backend, as a restart does; the backend's pid."""
    backend = await _backend_of(engine)
    await _terminate(stack, backend)
    return backend


async def test_a_connection_closed_while_idle_is_pinged_and_replaced_unseen(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)
    engine = _engine(stack)
    try:
        closed = await _closed_after_use(stack, engine)
        assert await _backend_of(engine) != closed
    finally:
        await engine.dispose()


async def test_a_connection_closed_while_in_use_fails_once_then_the_pool_recovers(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 3600.0)
    engine = _engine(stack)
    try:
        closed = await _closed_after_use(stack, engine)
        with pytest.raises(DBAPIError):  # returned too recently to be pinged
            await _backend_of(engine)
        assert await _backend_of(engine) != closed
    finally:
        await engine.dispose()

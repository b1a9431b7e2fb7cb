"""The database: one async engine per service, its schema, and its alembic migrations."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, exc, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

from libs.common.settings import Settings

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

Sessions = async_sessionmaker[AsyncSession]


def checked_schema(name: str) -> str:
    """A schema name safe to place in SQL text; schema names come from settings, not users."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a valid schema name (lowercase letters, digits, _)")
    return name


# A pooled connection unused this long is pinged before it is handed out again.
PING_AFTER_IDLE_SECONDS = 10.0
_RETURNED_AT = "closeloop_returned_at"


def create_engine(settings: Settings) -> AsyncEngine:
    engine = _create_async_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        connect_args={
            # asyncpg's deadline for each statement's reply; on a timeout SQLAlchemy closes
            # the connection rather than return it to the pool.
            "command_timeout": settings.database_command_timeout_ms / 1000,
            "server_settings": {
                "application_name": f"closeloop-{settings.service_name}",
                # asyncpg prepares every statement; after five runs PostgreSQL may keep a
                # generic plan made while a table was small (a sequential scan) for as long
                # as the connection lives. Decision 0013.
                "plan_cache_mode": "force_custom_plan",
            },
        },
    )
    event.listen(engine.sync_engine.pool, "checkin", _note_return)
    event.listen(engine.sync_engine.pool, "checkout", _check_on_checkout)
    return engine


def _note_return(_connection: Any, record: Any) -> None:
    if record is not None:
        record.info[_RETURNED_AT] = time.monotonic()


def _check_on_checkout(connection: Any, record: Any, _proxy: Any) -> None:
    """Hand out only a connection that is ready for a transaction of its own: not one still
    inside another's, and (if it sat unused) one that answers. Either failing makes SQLAlchemy
    close it and hand out another."""
    if _left_in_a_transaction(connection):
        raise exc.DisconnectionError("the connection was returned inside a transaction")
    _ping_if_idle(connection, record)


def _left_in_a_transaction(connection: Any) -> bool:
    """Whether a pooled connection is still inside a transaction on the server: the pool's
    rollback on return knows only the transactions SQLAlchemy began, not one left open by a
    statement sent straight to asyncpg and cut short (see `session_transaction`, the first
    guard; this is the second)."""
    driver = getattr(connection, "driver_connection", None)
    in_transaction = getattr(driver, "is_in_transaction", None)
    return bool(in_transaction()) if callable(in_transaction) else False


def _ping_if_idle(connection: Any, record: Any) -> None:
    """SQLAlchemy's pre-ping, but only for a connection that sat unused: its ping is three
    round trips (BEGIN, an empty statement, ROLLBACK), paid on every checkout, that is every
    transaction. A connection in steady use that breaks (PostgreSQL restarted) fails its
    statement instead; SQLAlchemy then replaces the pool's connections, and the caller's retry
    (the bus retries a batch) gets a fresh one.
    """
    returned_at = record.info.get(_RETURNED_AT)
    if returned_at is None or time.monotonic() - returned_at < PING_AFTER_IDLE_SECONDS:
        return
    try:
        connection.ping()
    except Exception as error:
        raise exc.DisconnectionError("the idle connection no longer answers") from error


def create_sessions(engine: AsyncEngine) -> Sessions:
    return async_sessionmaker(engine, expire_on_commit=False)


@contextlib.asynccontextmanager
async def session_transaction(sessions: Sessions) -> AsyncIterator[AsyncSession]:
    """A session in a transaction: committed when the block ends, rolled back if it raises.

    A statement cut short (its `database_command_timeout_ms` passed, or its task was cancelled)
    leaves its connection in a state nobody knows: the statement may still arrive and run, and
    after one sent straight to asyncpg (the bus's inbox and outbox, profile's and content's bulk
    statements) SQLAlchemy's rollback may not happen. That connection is closed, never pooled
    again, and PostgreSQL rolls back what it held. SQLAlchemy does the same for the statements
    it runs itself; this covers the others.
    """
    async with sessions() as session, session.begin():
        try:
            yield session
        except (TimeoutError, asyncio.CancelledError):
            await _close_connection(session)
            raise


async def _close_connection(session: AsyncSession) -> None:
    with contextlib.suppress(Exception):
        connection = await session.connection()
        await connection.invalidate()


async def ensure_schema(engine: AsyncEngine, schema: str) -> None:
    async with engine.begin() as connection:
        await connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {checked_schema(schema)}"))


def alembic_config(settings: Settings, migrations_dir: Path) -> Config:
    """Alembic's configuration for one service: its scripts, its schema, its database."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    config.attributes["schema"] = checked_schema(settings.schema_name)
    return config


def upgrade(settings: Settings, migrations_dir: Path) -> None:
    """Apply a service's migrations up to head (sync: runs before the service's event loop)."""
    command.upgrade(alembic_config(settings, migrations_dir), "head")


_CONFLICT_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected


def is_transaction_conflict(error: BaseException) -> bool:
    """Whether PostgreSQL rolled the transaction back for a conflict with another one (a
    deadlock, a serialization failure), raised by asyncpg or wrapped by SQLAlchemy: nothing is
    wrong with the work, and running it again goes through."""
    seen: BaseException | None = error
    for _ in range(10):  # the chain of causes, bounded
        if seen is None:
            return False
        for candidate in (seen, getattr(seen, "orig", None)):
            if getattr(candidate, "sqlstate", None) in _CONFLICT_SQLSTATES:
                return True
        seen = seen.__cause__ or seen.__context__
    return False

"""What every service's alembic `env.py` runs: migrations inside the service's own schema."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from libs.common.db import checked_schema


def run_service_migrations(target_metadata: MetaData) -> None:
    """Entry point for a service's env.py: online migrations over asyncpg."""
    config = context.config
    schema = checked_schema(config.attributes["schema"])
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("alembic config has no sqlalchemy.url; use libs.common.db.upgrade()")
    asyncio.run(_run_online(url, schema, target_metadata))


async def _run_online(url: str, schema: str, target_metadata: MetaData) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
            await connection.commit()
            await connection.run_sync(_run_sync, schema, target_metadata)
    finally:
        await engine.dispose()


def _run_sync(connection: Connection, schema: str, target_metadata: MetaData) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table_schema=schema,
        include_schemas=False,
    )
    with context.begin_transaction():
        context.run_migrations()


def service_schema() -> str:
    """The schema a migration script creates its tables in (the service's own)."""
    return checked_schema(context.config.attributes["schema"])

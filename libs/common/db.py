"""The database: one async engine per service, its schema, and its alembic migrations."""

from __future__ import annotations

import re
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
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


def create_engine(settings: Settings) -> AsyncEngine:
    return _create_async_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        pool_pre_ping=True,
        connect_args={
            "server_settings": {"application_name": f"closeloop-{settings.service_name}"}
        },
    )


def create_sessions(engine: AsyncEngine) -> Sessions:
    return async_sessionmaker(engine, expire_on_commit=False)


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

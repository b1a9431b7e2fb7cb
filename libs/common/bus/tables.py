"""The inbox and outbox tables every consuming or producing service keeps in its own schema."""

from __future__ import annotations

from alembic import op
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.schema import SchemaItem

from libs.common.db import checked_schema


def _inbox_items() -> list[SchemaItem]:
    return [
        Column("consumer", Text, nullable=False),
        Column("event_id", Text, nullable=False),
        Column("handled_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("consumer", "event_id", name="inbox_pkey"),
    ]


def _outbox_items() -> list[SchemaItem]:
    return [
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column("events", Integer, nullable=False),
        Column("messages", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ]


def inbox_table(metadata: MetaData) -> Table:
    """Ids of the events each consumer has handled: a duplicate is one already here."""
    return Table("inbox", metadata, *_inbox_items())


def outbox_table(metadata: MetaData) -> Table:
    """Events written in a handler's transaction, one row per transaction, waiting for the relay."""
    return Table("outbox", metadata, *_outbox_items())


def create_bus_tables(schema: str) -> None:
    """For a service's first migration: create its inbox and outbox."""
    op.create_table("inbox", *_inbox_items(), schema=schema)
    op.create_index("inbox_handled_at", "inbox", ["handled_at"], schema=schema)
    op.create_table("outbox", *_outbox_items(), schema=schema)


def drop_bus_tables(schema: str) -> None:
    op.drop_table("outbox", schema=schema)
    op.drop_table("inbox", schema=schema)


async def create_bus_schema(engine: AsyncEngine, schema: str) -> None:
    """A schema with only an inbox and an outbox: for benchmarks and tests of the bus alone."""
    async with engine.begin() as connection:
        await connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {checked_schema(schema)}"))
        metadata = MetaData(schema=schema)
        inbox_table(metadata)
        outbox_table(metadata)
        await connection.run_sync(metadata.create_all)

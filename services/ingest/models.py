"""Ingest's tables: sources with their hashed write keys, and import jobs."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Integer, MetaData, Table, Text, func
from sqlalchemy.dialects.postgresql import JSONB


def sources_table(metadata: MetaData) -> Table:
    """Systems allowed to send events; only a hash of each write key is kept."""
    return Table(
        "sources",
        metadata,
        Column("id", Text, primary_key=True),
        Column("name", Text, nullable=False),
        Column("key_hash", Text, nullable=False, unique=True),
        Column("key_prefix", Text, nullable=False),
        Column("enabled", Boolean, nullable=False, server_default="true"),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


def import_jobs_table(metadata: MetaData) -> Table:
    """One row per `POST /v1/import`: its counts and the first errors, readable afterwards."""
    return Table(
        "import_jobs",
        metadata,
        Column("id", Text, primary_key=True),
        Column("source_id", Text, nullable=False, index=True),
        Column("format", Text, nullable=False),
        Column("status", Text, nullable=False),
        Column("accepted", Integer, nullable=False, server_default="0"),
        Column("rejected", Integer, nullable=False, server_default="0"),
        Column("errors", JSONB, nullable=False, server_default="[]"),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("finished_at", DateTime(timezone=True)),
    )

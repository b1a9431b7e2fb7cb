"""Sources and import jobs.

Revision ID: 0001

Written out as the tables stood when this revision was made: a revision creates what it
created then, whatever the models say now.
"""

import hashlib

from alembic import op
from sqlalchemy import Boolean, Column, DateTime, Integer, Text, text
from sqlalchemy.dialects.postgresql import JSONB

from libs.common.migrations import service_schema

revision = "0001"
down_revision = None

_MAX_IDENTIFIER = 63


def upgrade() -> None:
    schema = service_schema()
    op.create_table(
        "sources",
        Column("id", Text, primary_key=True),
        Column("name", Text, nullable=False),
        Column("key_hash", Text, nullable=False, unique=True),
        Column("key_prefix", Text, nullable=False),
        Column("enabled", Boolean, nullable=False, server_default="true"),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        schema=schema,
    )
    op.create_table(
        "import_jobs",
        Column("id", Text, primary_key=True),
        Column("source_id", Text, nullable=False),
        Column("format", Text, nullable=False),
        Column("status", Text, nullable=False),
        Column("accepted", Integer, nullable=False, server_default="0"),
        Column("rejected", Integer, nullable=False, server_default="0"),
        Column("errors", JSONB, nullable=False, server_default="[]"),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        Column("finished_at", DateTime(timezone=True)),
        schema=schema,
    )
    op.create_index(_source_index(schema), "import_jobs", ["source_id"], schema=schema)


def _source_index(schema: str) -> str:
    """The name SQLAlchemy gave the index of `source_id` (declared `index=True`): its naming
    convention's `ix_<schema>_<table>_<column>`, shortened as SQLAlchemy shortens a name longer
    than PostgreSQL's 63 characters (the first 55, `_`, the last 4 hex digits of its MD5)."""
    name = f"ix_{schema}_import_jobs_source_id"
    if len(name) <= _MAX_IDENTIFIER:
        return name
    digest = hashlib.md5(name.encode(), usedforsecurity=False).hexdigest()
    return f"{name[: _MAX_IDENTIFIER - 8]}_{digest[-4:]}"


def downgrade() -> None:
    schema = service_schema()
    op.drop_table("import_jobs", schema=schema)
    op.drop_table("sources", schema=schema)

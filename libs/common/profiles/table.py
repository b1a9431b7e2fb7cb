"""The one table a read-model copy lives in, in the schema of the service that keeps it."""

from __future__ import annotations

from sqlalchemy import Column, MetaData, Table, Text, text
from sqlalchemy.dialects.postgresql import JSONB


def profiles_table(metadata: MetaData) -> Table:
    """A service's copy of each profile's facts (libs.common.profiles.facts)."""
    return Table(
        "profiles",
        metadata,
        Column("profile_id", Text, primary_key=True),
        Column("traits", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("tags", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
        Column("lifecycle_stage", Text),
        Column("scores", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("top_category", Text),
    )

"""Profiles, identities, merged profiles, event history, inbox and outbox.

Revision ID: 0001

Written out as the tables stood when this revision was made: a revision creates what it
created then, whatever the models say now (0002 adds the review columns).
"""

from alembic import op
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    PrimaryKeyConstraint,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from libs.common.bus.frozen_tables import create_bus_tables_v1, drop_bus_tables_v1
from libs.common.migrations import service_schema

revision = "0001"
down_revision = None

_NOW = text("now()")


def upgrade() -> None:
    schema = service_schema()
    create_bus_tables_v1(schema)
    op.create_table(
        "profiles",
        Column("id", Text, primary_key=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        Column("state", JSONB, nullable=False),
        schema=schema,
    )
    op.create_table(
        "identities",
        Column("kind", Text, nullable=False),
        Column("value", Text, nullable=False),
        Column("profile_id", Text, nullable=False),
        PrimaryKeyConstraint("kind", "value", name="identities_pkey"),
        schema=schema,
    )
    op.create_index("identities_profile_id", "identities", ["profile_id"], schema=schema)
    op.create_table(
        "merged_profiles",
        Column("id", Text, primary_key=True),
        Column("survivor_id", Text, nullable=False),
        Column("merged_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        schema=schema,
    )
    op.create_index(
        "merged_profiles_survivor_id", "merged_profiles", ["survivor_id"], schema=schema
    )
    op.create_table(
        "profile_events",
        Column("seq", BigInteger, Identity(always=False), primary_key=True),
        Column("profile_id", Text, nullable=False),
        Column("message_id", Text, nullable=False),
        Column("event", Text, nullable=False),
        Column("kind", Text, nullable=False),
        Column("occurred_at", DateTime(timezone=True), nullable=False),
        Column("properties", JSONB, nullable=False),
        schema=schema,
    )
    op.create_index(
        "profile_events_profile_seq", "profile_events", ["profile_id", "seq"], schema=schema
    )


def downgrade() -> None:
    schema = service_schema()
    for table in ("profile_events", "merged_profiles", "identities", "profiles"):
        op.drop_table(table, schema=schema)
    drop_bus_tables_v1(schema)

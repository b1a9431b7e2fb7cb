"""Segments, profiles, behaviours, memberships, timers, inbox and outbox.

Revision ID: 0001

Written out as the tables stood when this revision was made: a revision creates what it
created then, whatever the models say now.
"""

from alembic import op
from sqlalchemy import Column, DateTime, Integer, PrimaryKeyConstraint, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from libs.common.bus.frozen_tables import create_bus_tables_v1, drop_bus_tables_v1
from libs.common.migrations import service_schema

revision = "0001"
down_revision = None

_NOW = text("now()")


def upgrade() -> None:
    schema = service_schema()
    create_bus_tables_v1(schema)
    op.create_table(
        "segments",
        Column("id", Text, primary_key=True),
        Column("name", Text, nullable=False),
        Column("description", Text, nullable=False, server_default=""),
        Column("version", Integer, nullable=False),
        Column("conditions", JSONB, nullable=False),
        Column("refs", ARRAY(Text), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        schema=schema,
    )
    op.create_index("segments_refs", "segments", ["refs"], schema=schema, postgresql_using="gin")
    op.create_table(
        "profiles",
        Column("profile_id", Text, primary_key=True),
        Column("traits", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("tags", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
        Column("lifecycle_stage", Text),
        Column("scores", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        schema=schema,
    )
    op.create_table(
        "behaviours",
        Column("profile_id", Text, nullable=False),
        Column("event", Text, nullable=False),
        Column("occurred_at", DateTime(timezone=True), nullable=False),
        Column("properties", JSONB, nullable=False),
        schema=schema,
    )
    op.create_index(
        "behaviours_profile_event_time",
        "behaviours",
        ["profile_id", "event", "occurred_at"],
        schema=schema,
    )
    op.create_table(
        "memberships",
        Column("segment_id", Text, nullable=False),
        Column("profile_id", Text, nullable=False),
        Column("segment_version", Integer, nullable=False),
        Column("entered_at", DateTime(timezone=True), nullable=False),
        PrimaryKeyConstraint("segment_id", "profile_id", name="memberships_pkey"),
        schema=schema,
    )
    op.create_index("memberships_profile", "memberships", ["profile_id"], schema=schema)
    op.create_table(
        "timers",
        Column("segment_id", Text, nullable=False),
        Column("profile_id", Text, nullable=False),
        Column("due_at", DateTime(timezone=True), nullable=False),
        PrimaryKeyConstraint("segment_id", "profile_id", name="timers_pkey"),
        schema=schema,
    )
    op.create_index("timers_due_at", "timers", ["due_at"], schema=schema)
    op.create_index("timers_profile", "timers", ["profile_id"], schema=schema)


def downgrade() -> None:
    schema = service_schema()
    for table in ("timers", "memberships", "behaviours", "profiles", "segments"):
        op.drop_table(table, schema=schema)
    drop_bus_tables_v1(schema)

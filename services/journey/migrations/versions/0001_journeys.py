"""Journeys, versions, profiles, runs, timers, stats, inbox and outbox.

Revision ID: 0001

Written out as the tables stood when this revision was made: a revision creates what it
created then, whatever the models say now.
"""

from alembic import op
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Integer,
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
        "journeys",
        Column("id", Text, primary_key=True),
        Column("name", Text, nullable=False),
        Column("description", Text, nullable=False, server_default=""),
        Column("status", Text, nullable=False, server_default="draft"),
        Column("draft", JSONB, nullable=False),
        Column("published_version", Integer),
        Column("entry_segment", Text),
        Column("entry_event", Text),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        schema=schema,
    )
    op.create_index("journeys_entry_segment", "journeys", ["entry_segment"], schema=schema)
    op.create_index("journeys_entry_event", "journeys", ["entry_event"], schema=schema)
    op.create_table(
        "journey_versions",
        Column("journey_id", Text, nullable=False),
        Column("version", Integer, nullable=False),
        Column("definition", JSONB, nullable=False),
        Column("published_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        PrimaryKeyConstraint("journey_id", "version", name="journey_versions_pkey"),
        _journey_key(schema, "journey_versions"),
        schema=schema,
    )
    op.create_table(
        "profiles",
        Column("profile_id", Text, primary_key=True),
        Column("traits", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("tags", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
        Column("lifecycle_stage", Text),
        Column("scores", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        schema=schema,
    )
    _runs(schema)
    op.create_table(
        "stats",
        Column("journey_id", Text, nullable=False),
        Column("version", Integer, nullable=False),
        Column("node_id", Text, nullable=False),
        Column("counter", Text, nullable=False),
        Column("value", BigInteger, nullable=False),
        PrimaryKeyConstraint("journey_id", "version", "node_id", "counter", name="stats_pkey"),
        _journey_key(schema, "stats"),
        schema=schema,
    )


def _journey_key(schema: str, table: str) -> ForeignKeyConstraint:
    """A `journey_id` that goes with its journey: named as PostgreSQL named it."""
    return ForeignKeyConstraint(
        ["journey_id"],
        [f"{schema}.journeys.id"],
        name=f"{table}_journey_id_fkey",
        ondelete="CASCADE",
    )


def _runs(schema: str) -> None:
    op.create_table(
        "runs",
        Column("journey_id", Text, nullable=False),
        Column("profile_id", Text, nullable=False),
        Column("run", Integer, nullable=False),
        Column("version", Integer, nullable=False),
        Column("node_id", Text),
        Column("status", Text, nullable=False),
        Column("entered_at", DateTime(timezone=True), nullable=False),
        Column("trigger", JSONB, nullable=False),
        Column("arms", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("requests", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("exit_reason", Text),
        Column("goal_until", DateTime(timezone=True)),
        Column("goal_reached_at", DateTime(timezone=True)),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        PrimaryKeyConstraint("journey_id", "profile_id", "run", name="runs_pkey"),
        _journey_key(schema, "runs"),
        schema=schema,
    )
    op.create_index("runs_profile", "runs", ["profile_id"], schema=schema)
    op.create_index(
        "runs_journey_node", "runs", ["journey_id", "version", "node_id", "status"], schema=schema
    )
    op.create_table(
        "timers",
        Column("journey_id", Text, nullable=False),
        Column("profile_id", Text, nullable=False),
        Column("run", Integer, nullable=False),
        Column("node_id", Text, nullable=False),
        Column("due_at", DateTime(timezone=True), nullable=False),
        PrimaryKeyConstraint("journey_id", "profile_id", "run", name="timers_pkey"),
        # A merge renumbers runs; the timer follows its run.
        ForeignKeyConstraint(
            ["journey_id", "profile_id", "run"],
            [f"{schema}.runs.journey_id", f"{schema}.runs.profile_id", f"{schema}.runs.run"],
            onupdate="CASCADE",
            ondelete="CASCADE",
            name="timers_run_fkey",
        ),
        schema=schema,
    )
    op.create_index("timers_due_at", "timers", ["due_at"], schema=schema)


def downgrade() -> None:
    schema = service_schema()
    for table in ("stats", "timers", "runs", "profiles", "journey_versions", "journeys"):
        op.drop_table(table, schema=schema)
    drop_bus_tables_v1(schema)

"""What entering current members needs: the segment memberships journey hears, one enrolment
row per entry of a segment's current members (its cursor and throttle), the broadcasts, and
which journeys are broadcasts.

Revision ID: 0004
Revises: 0003
"""

from alembic import op
from sqlalchemy import (
    Column,
    DateTime,
    ForeignKeyConstraint,
    Integer,
    PrimaryKeyConstraint,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from libs.common.migrations import service_schema

revision = "0004"
down_revision = "0003"

_NOW = text("now()")


def upgrade() -> None:
    schema = service_schema()
    # `journey` or `broadcast`: a broadcast is a journey the broadcasts API made and runs.
    op.add_column(
        "journeys",
        Column("kind", Text, nullable=False, server_default="journey"),
        schema=schema,
    )
    _memberships(schema)
    _enrolments(schema)
    _broadcasts(schema)


def _memberships(schema: str) -> None:
    # The segments each profile is in now, as segment.v1 announced them.
    op.create_table(
        "memberships",
        Column("segment_id", Text, nullable=False),
        Column("profile_id", Text, nullable=False),
        Column("entered_at", DateTime(timezone=True), nullable=False),
        PrimaryKeyConstraint("segment_id", "profile_id", name="memberships_pkey"),
        schema=schema,
    )
    op.create_index("memberships_profile", "memberships", ["profile_id"], schema=schema)


def _enrolments(schema: str) -> None:
    # One entry of a segment's current members into a journey version: who is next (cursor,
    # members in profile id order), how many were scheduled per due instant (the throttle), and
    # when the worker next looks at it.
    op.create_table(
        "enrolments",
        Column("id", Text, nullable=False),
        Column("journey_id", Text, nullable=False),
        Column("version", Integer, nullable=False),
        Column("occurrence", Integer, nullable=False, server_default="1"),
        Column("segment_id", Text, nullable=False),
        Column("per_minute", Integer, nullable=False),
        Column("at", DateTime(timezone=True)),
        Column("local_time", Text),
        Column("due_at", DateTime(timezone=True), nullable=False),
        # pending, done, cancelled
        Column("status", Text, nullable=False, server_default="pending"),
        Column("started_at", DateTime(timezone=True)),
        Column("cursor", Text),
        Column("scheduled", Integer, nullable=False, server_default="0"),
        Column("slots", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        PrimaryKeyConstraint("id", name="enrolments_pkey"),
        ForeignKeyConstraint(
            ["journey_id"],
            [f"{schema}.journeys.id"],
            ondelete="CASCADE",
            name="enrolments_journey_fkey",
        ),
        schema=schema,
    )
    op.create_index("enrolments_journey", "enrolments", ["journey_id"], schema=schema)
    op.create_index("enrolments_due", "enrolments", ["status", "due_at"], schema=schema)


def _broadcasts(schema: str) -> None:
    op.create_table(
        "broadcasts",
        Column("id", Text, nullable=False),
        Column("spec", JSONB, nullable=False),
        # active, paused, cancelled
        Column("status", Text, nullable=False, server_default="active"),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        PrimaryKeyConstraint("id", name="broadcasts_pkey"),
        ForeignKeyConstraint(
            ["id"],
            [f"{schema}.journeys.id"],
            ondelete="CASCADE",
            name="broadcasts_journey_fkey",
        ),
        schema=schema,
    )


def downgrade() -> None:
    schema = service_schema()
    op.drop_table("broadcasts", schema=schema)
    op.drop_table("enrolments", schema=schema)
    op.drop_table("memberships", schema=schema)
    op.drop_column("journeys", "kind", schema=schema)

"""The segment service's tables: definitions, the facts rules read, memberships and timers."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from libs.common.profiles import profiles_table


def segments_table(metadata: MetaData) -> Table:
    """One row per segment: its current definition and version, and what the rules reference."""
    return Table(
        "segments",
        metadata,
        Column("id", Text, primary_key=True),
        Column("name", Text, nullable=False),
        Column("description", Text, nullable=False, server_default=""),
        Column("version", Integer, nullable=False),
        Column("conditions", JSONB, nullable=False),
        # `event:order_completed`, `trait:plan`, `tag:vip`, `lifecycle`, `score:rfm`,
        # `segment:<id>`: a change touching one of these keys can change membership.
        Column("refs", ARRAY(Text), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        Index("segments_refs", "refs", postgresql_using="gin"),
    )


def behaviours_table(metadata: MetaData) -> Table:
    """Every behaviour with its event time and properties, for event conditions."""
    return Table(
        "behaviours",
        metadata,
        Column("profile_id", Text, nullable=False),
        Column("event", Text, nullable=False),
        Column("occurred_at", DateTime(timezone=True), nullable=False),
        Column("properties", JSONB, nullable=False),
        Index("behaviours_profile_event_time", "profile_id", "event", "occurred_at"),
        Index("behaviours_occurred_at", "occurred_at"),
    )


def memberships_table(metadata: MetaData) -> Table:
    """Who is in which segment now: a transition is a row appearing or disappearing."""
    return Table(
        "memberships",
        metadata,
        Column("segment_id", Text, nullable=False),
        Column("profile_id", Text, nullable=False),
        Column("segment_version", Integer, nullable=False),
        Column("entered_at", DateTime(timezone=True), nullable=False),
        PrimaryKeyConstraint("segment_id", "profile_id", name="memberships_pkey"),
        Index("memberships_profile", "profile_id"),
    )


def timers_table(metadata: MetaData) -> Table:
    """When a profile's membership in a segment must be checked again: a window runs out."""
    return Table(
        "timers",
        metadata,
        Column("segment_id", Text, nullable=False),
        Column("profile_id", Text, nullable=False),
        Column("due_at", DateTime(timezone=True), nullable=False),
        PrimaryKeyConstraint("segment_id", "profile_id", name="timers_pkey"),
        Index("timers_due_at", "due_at"),
        Index("timers_profile", "profile_id"),
    )


def all_tables(metadata: MetaData) -> list[Table]:
    return [
        segments_table(metadata),
        profiles_table(metadata),
        behaviours_table(metadata),
        memberships_table(metadata),
        timers_table(metadata),
    ]

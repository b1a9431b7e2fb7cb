"""The profile service's first tables: profiles, the identity graph, merge redirects, event
history.

Later tables are in their own migration revisions (0003: `prediction_fits`).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB


def profiles_table(metadata: MetaData) -> Table:
    """One row per living profile; `state` is a `ProfileState` document."""
    return Table(
        "profiles",
        metadata,
        Column("id", Text, primary_key=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("state", JSONB, nullable=False),
        # The moment the features downstream last heard of were computed for, and the next
        # moment they may change by time alone (services/profile/review.py).
        Column("reviewed_at", DateTime(timezone=True)),
        Column("review_due_at", DateTime(timezone=True)),
        Index(
            "profiles_review_due_at",
            "review_due_at",
            postgresql_where=text("review_due_at IS NOT NULL"),
        ),
    )


def identities_table(metadata: MetaData) -> Table:
    """The identity graph: each identifier belongs to exactly one profile."""
    return Table(
        "identities",
        metadata,
        Column("kind", Text, nullable=False),
        Column("value", Text, nullable=False),
        Column("profile_id", Text, nullable=False),
        PrimaryKeyConstraint("kind", "value", name="identities_pkey"),
        Index("identities_profile_id", "profile_id"),
    )


def merged_profiles_table(metadata: MetaData) -> Table:
    """Profiles merged away, and the survivor a request for them is redirected to."""
    return Table(
        "merged_profiles",
        metadata,
        Column("id", Text, primary_key=True),
        Column("survivor_id", Text, nullable=False),
        Column("merged_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Index("merged_profiles_survivor_id", "survivor_id"),
    )


def profile_events_table(metadata: MetaData) -> Table:
    """Each profile's recent calls, newest by `seq`; trimmed to the configured history."""
    return Table(
        "profile_events",
        metadata,
        Column("seq", BigInteger, Identity(always=False), primary_key=True),
        Column("profile_id", Text, nullable=False),
        Column("message_id", Text, nullable=False),
        Column("event", Text, nullable=False),
        Column("kind", Text, nullable=False),
        Column("occurred_at", DateTime(timezone=True), nullable=False),
        Column("properties", JSONB, nullable=False),
        Index("profile_events_profile_seq", "profile_id", "seq"),
        Index("profile_events_occurred_at", "occurred_at"),
    )


def profile_metadata(schema: str) -> MetaData:
    """The tables revision 0001 creates. It must not grow, or 0001 would create a later
    revision's table: later tables are written out in their own revision."""
    metadata = MetaData(schema=schema)
    profiles_table(metadata)
    identities_table(metadata)
    merged_profiles_table(metadata)
    profile_events_table(metadata)
    return metadata

"""The journey service's tables (in its own schema), as revision 0001 created them.

Later revisions write theirs out: 0002 adds the engagement evidence (`engagement`,
`untargeted_engagement`, `messages`), the learned `decisions`, and `runs.timing` and
`runs.channels`; 0003 adds `profiles.top_category`; 0005 indexes finished runs by `updated_at`
for their retention. The profiles table is the shared read
model's (libs.common.profiles), as it is now.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from libs.common.profiles import profiles_table

_NOW = text("now()")


def journeys_table(metadata: MetaData) -> Table:
    """One row per journey: its draft, status and what its latest published version enters on."""
    return Table(
        "journeys",
        metadata,
        Column("id", Text, primary_key=True),
        Column("name", Text, nullable=False),
        Column("description", Text, nullable=False, server_default=""),
        # draft (never published), active, paused
        Column("status", Text, nullable=False, server_default="draft"),
        Column("draft", JSONB, nullable=False),
        Column("published_version", Integer),
        Column("entry_segment", Text),
        Column("entry_event", Text),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        Index("journeys_entry_segment", "entry_segment"),
        Index("journeys_entry_event", "entry_event"),
    )


def versions_table(metadata: MetaData) -> Table:
    """Published versions: immutable, so a run always finishes the graph it entered."""
    return Table(
        "journey_versions",
        metadata,
        Column("journey_id", Text, ForeignKey("journeys.id", ondelete="CASCADE"), nullable=False),
        Column("version", Integer, nullable=False),
        Column("definition", JSONB, nullable=False),
        Column("published_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        PrimaryKeyConstraint("journey_id", "version", name="journey_versions_pkey"),
    )


def runs_table(metadata: MetaData) -> Table:
    """Each profile's runs through each journey; `run` counts the profile's entries."""
    return Table(
        "runs",
        metadata,
        Column("journey_id", Text, ForeignKey("journeys.id", ondelete="CASCADE"), nullable=False),
        Column("profile_id", Text, nullable=False),
        Column("run", Integer, nullable=False),
        Column("version", Integer, nullable=False),
        Column("node_id", Text),
        # waiting, held, completed, exited ("active" exists only inside a transaction)
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
        Index("runs_profile", "profile_id"),
        Index("runs_journey_node", "journey_id", "version", "node_id", "status"),
    )


def timers_table(metadata: MetaData) -> Table:
    """When a waiting (or held, on resume) run must move on; at most one per run."""
    return Table(
        "timers",
        metadata,
        Column("journey_id", Text, nullable=False),
        Column("profile_id", Text, nullable=False),
        Column("run", Integer, nullable=False),
        Column("node_id", Text, nullable=False),
        Column("due_at", DateTime(timezone=True), nullable=False),
        PrimaryKeyConstraint("journey_id", "profile_id", "run", name="timers_pkey"),
        # A merge renumbers runs; the timer follows its run.
        ForeignKeyConstraint(
            ["journey_id", "profile_id", "run"],
            ["runs.journey_id", "runs.profile_id", "runs.run"],
            onupdate="CASCADE",
            ondelete="CASCADE",
            name="timers_run_fkey",
        ),
        Index("timers_due_at", "due_at"),
    )


def stats_table(metadata: MetaData) -> Table:
    """Counters per journey version and node (node '' holds the journey-wide ones)."""
    return Table(
        "stats",
        metadata,
        Column("journey_id", Text, ForeignKey("journeys.id", ondelete="CASCADE"), nullable=False),
        Column("version", Integer, nullable=False),
        Column("node_id", Text, nullable=False),
        Column("counter", Text, nullable=False),
        Column("value", BigInteger, nullable=False),
        PrimaryKeyConstraint("journey_id", "version", "node_id", "counter", name="stats_pkey"),
    )


def all_tables(metadata: MetaData) -> list[Table]:
    return [
        journeys_table(metadata),
        versions_table(metadata),
        profiles_table(metadata),
        runs_table(metadata),
        timers_table(metadata),
        stats_table(metadata),
    ]

"""The content service's first tables: templates and their versions, bandit state, and the
decision taken for every request (0001).

Later changes are written out in their own migration revisions (0003: the contextual bandit's
`variant_evidence` in place of `variant_stats`, `experiments`, `insights`, and the context and
propensity of each decision). Content kept a copy of profiles (0001) and the requests awaiting
an address (0002) until requests carried their profile's facts; 0004 drops both. 0005 indexes
decisions and rewards by time, for their retention. 0006 gives each template version the
subscription topic its messages belong to (`template_versions.topic`); 0007 marks template
versions transactional (`template_versions.transactional`): `template_versions` here is as 0007
leaves it.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
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


def templates_table(metadata: MetaData) -> Table:
    """One row per template: its name, channel and current version."""
    return Table(
        "templates",
        metadata,
        Column("id", Text, primary_key=True),
        Column("name", Text, nullable=False),
        Column("channel", Text, nullable=False),
        Column("version", Integer, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        Index("templates_channel", "channel"),
    )


def template_versions_table(metadata: MetaData) -> Table:
    """Every version of every template, immutable: a message names the version it came from."""
    return Table(
        "template_versions",
        metadata,
        Column("template_id", Text, nullable=False),
        Column("version", Integer, nullable=False),
        Column("defaults", JSONB, nullable=False),
        Column("variants", JSONB, nullable=False),
        # `clicks` or `conversions`: what counts as a success for the bandit.
        Column("reward", Text, nullable=False),
        Column("holdout_share", Float, nullable=False),
        # The subscription topic its messages belong to (revision 0006).
        Column("topic", Text),
        # Its messages are transactional (revision 0007): never capped or arbitrated.
        Column("transactional", Boolean, nullable=False, server_default=text("false")),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        PrimaryKeyConstraint("template_id", "version", name="template_versions_pkey"),
        ForeignKeyConstraint(["template_id"], ["templates.id"], ondelete="CASCADE"),
    )


def variant_stats_table(metadata: MetaData) -> Table:
    """The bandit's evidence per variant: sends, clicked sends, credited conversions."""
    return Table(
        "variant_stats",
        metadata,
        Column("template_id", Text, nullable=False),
        Column("variant_id", Text, nullable=False),
        Column("trials", BigInteger, nullable=False, server_default="0"),
        Column("clicks", BigInteger, nullable=False, server_default="0"),
        Column("conversions", Float, nullable=False, server_default="0"),
        PrimaryKeyConstraint("template_id", "variant_id", name="variant_stats_pkey"),
    )


def rewards_table(metadata: MetaData) -> Table:
    """Which message already counted as a trial, a click or a conversion: each counts once."""
    return Table(
        "rewards",
        metadata,
        Column("message_id", Text, nullable=False),
        Column("kind", Text, nullable=False),
        Column("counted_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        PrimaryKeyConstraint("message_id", "kind", name="rewards_pkey"),
    )


def decisions_table(metadata: MetaData) -> Table:
    """What content decided for each request: rendered (which variant), held out, undeliverable."""
    return Table(
        "decisions",
        metadata,
        Column("idempotency_key", Text, primary_key=True),
        Column("request_id", Text, nullable=False),
        Column("profile_id", Text, nullable=False),
        Column("template_id", Text, nullable=False),
        Column("template_version", Integer, nullable=False),
        Column("variant_id", Text),
        Column("outcome", Text, nullable=False),
        Column("decided_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        Index("decisions_profile", "profile_id"),
        Index("decisions_template_outcome", "template_id", "outcome"),
    )


def all_tables(metadata: MetaData) -> list[Table]:
    return [
        templates_table(metadata),
        template_versions_table(metadata),
        variant_stats_table(metadata),
        rewards_table(metadata),
        decisions_table(metadata),
    ]

"""The attribution service's first tables: definitions, touchpoints, conversions, KPI rollups.

Later tables are in their own migration revisions (0002: `campaign_touches`).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

_ROLLUP_KEY = ("bucket", "journey_id", "node_id", "channel", "template_id", "variant_id")


def definitions_table(metadata: MetaData) -> Table:
    """One row per conversion definition; `definition` holds it as the API took it."""
    return Table(
        "definitions",
        metadata,
        Column("id", Text, primary_key=True),
        Column("event", Text, nullable=False),
        Column("definition", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        Index("definitions_event", "event"),
    )


def touchpoints_table(metadata: MetaData) -> Table:
    """Each outcome of each message, once (its first occurrence), with the message's lineage.

    Per profile these rows are also the touch paths the Markov model reads.
    """
    return Table(
        "touchpoints",
        metadata,
        Column("profile_id", Text, nullable=False),
        Column("message_id", Text, nullable=False),
        Column("outcome", Text, nullable=False),
        Column("channel", Text, nullable=False),
        Column("journey_id", Text, nullable=False),
        Column("journey_version", Integer, nullable=False),
        Column("node_id", Text, nullable=False),
        Column("template_id", Text, nullable=False),
        Column("template_version", Integer),
        Column("variant_id", Text),
        Column("occurred_at", DateTime(timezone=True), nullable=False),
        PrimaryKeyConstraint("message_id", "outcome", name="touchpoints_pkey"),
        Index("touchpoints_profile_time", "profile_id", "occurred_at"),
        Index("touchpoints_time", "occurred_at"),
    )


def conversions_table(metadata: MetaData) -> Table:
    """Every conversion handled, attributed or not: its deterministic id stops double credit."""
    return Table(
        "conversions",
        metadata,
        Column("conversion_id", Text, primary_key=True),
        Column("definition_id", Text, nullable=False),
        Column("profile_id", Text, nullable=False),
        Column("occurred_at", DateTime(timezone=True), nullable=False),
        Column("value", Numeric),
        Column("currency", Text),
        Column("attribution_model", Text, nullable=False),
        Column("attributed", Boolean, nullable=False),
        Column("credits", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
        Index("conversions_profile_time", "profile_id", "occurred_at"),
        Index("conversions_time", "occurred_at"),
    )


def _rollup_key_columns() -> list[Column[object]]:
    return [
        Column("bucket", DateTime(timezone=True), nullable=False),
        Column("journey_id", Text, nullable=False),
        Column("node_id", Text, nullable=False),
        Column("channel", Text, nullable=False),
        Column("template_id", Text, nullable=False),
        # '' for a single-variant template: a key column cannot be NULL.
        Column("variant_id", Text, nullable=False),
    ]


def kpi_rollups_table(metadata: MetaData) -> Table:
    """Counts per hour and message lineage, kept up to date by the handler's transaction."""
    return Table(
        "kpi_rollups",
        metadata,
        *_rollup_key_columns(),
        Column("sent", Integer, nullable=False, server_default="0"),
        Column("delivered", Integer, nullable=False, server_default="0"),
        Column("opened", Integer, nullable=False, server_default="0"),
        Column("clicked", Integer, nullable=False, server_default="0"),
        Column("suppressed", Integer, nullable=False, server_default="0"),
        Column("suppressed_frequency_cap", Integer, nullable=False, server_default="0"),
        Column("failed", Integer, nullable=False, server_default="0"),
        Column("converted", Numeric, nullable=False, server_default="0"),
        PrimaryKeyConstraint(*_ROLLUP_KEY, name="kpi_rollups_pkey"),
        Index("kpi_rollups_journey", "journey_id", "bucket"),
    )


def revenue_rollups_table(metadata: MetaData) -> Table:
    """Credited revenue per hour, message lineage and currency."""
    return Table(
        "revenue_rollups",
        metadata,
        *_rollup_key_columns(),
        Column("currency", Text, nullable=False),
        Column("revenue", Numeric, nullable=False, server_default="0"),
        PrimaryKeyConstraint(*_ROLLUP_KEY, "currency", name="revenue_rollups_pkey"),
    )


def conversion_rollups_table(metadata: MetaData) -> Table:
    """Conversions per hour and definition, attributed or not, with their value per currency."""
    return Table(
        "conversion_rollups",
        metadata,
        Column("bucket", DateTime(timezone=True), nullable=False),
        Column("definition_id", Text, nullable=False),
        Column("currency", Text, nullable=False),
        Column("attributed", Integer, nullable=False, server_default="0"),
        Column("unattributed", Integer, nullable=False, server_default="0"),
        Column("value", Numeric, nullable=False, server_default="0"),
        PrimaryKeyConstraint("bucket", "definition_id", "currency", name="conversion_rollups_pkey"),
    )


def all_tables(metadata: MetaData) -> list[Table]:
    """The tables revision 0001 creates. It must not grow, or 0001 would create a later
    revision's table: later tables are written out in their own revision (0002:
    `campaign_touches`)."""
    return [
        definitions_table(metadata),
        touchpoints_table(metadata),
        conversions_table(metadata),
        kpi_rollups_table(metadata),
        revenue_rollups_table(metadata),
        conversion_rollups_table(metadata),
    ]

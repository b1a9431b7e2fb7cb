"""Conversion definitions, touchpoints, conversions, KPI rollups, inbox and outbox.

Revision ID: 0001

Written out as the tables stood when this revision was made: a revision creates what it
created then, whatever the models say now.
"""

from alembic import op
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    Numeric,
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
_ROLLUP_KEY = ("bucket", "journey_id", "node_id", "channel", "template_id", "variant_id")


def upgrade() -> None:
    schema = service_schema()
    create_bus_tables_v1(schema)
    op.create_table(
        "definitions",
        Column("id", Text, primary_key=True),
        Column("event", Text, nullable=False),
        Column("definition", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        schema=schema,
    )
    op.create_index("definitions_event", "definitions", ["event"], schema=schema)
    _touchpoints(schema)
    _conversions(schema)
    _rollups(schema)


def _touchpoints(schema: str) -> None:
    op.create_table(
        "touchpoints",
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
        schema=schema,
    )
    op.create_index(
        "touchpoints_profile_time", "touchpoints", ["profile_id", "occurred_at"], schema=schema
    )
    op.create_index("touchpoints_time", "touchpoints", ["occurred_at"], schema=schema)


def _conversions(schema: str) -> None:
    op.create_table(
        "conversions",
        Column("conversion_id", Text, primary_key=True),
        Column("definition_id", Text, nullable=False),
        Column("profile_id", Text, nullable=False),
        Column("occurred_at", DateTime(timezone=True), nullable=False),
        Column("value", Numeric),
        Column("currency", Text),
        Column("attribution_model", Text, nullable=False),
        Column("attributed", Boolean, nullable=False),
        Column("credits", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
        schema=schema,
    )
    op.create_index(
        "conversions_profile_time", "conversions", ["profile_id", "occurred_at"], schema=schema
    )
    op.create_index("conversions_time", "conversions", ["occurred_at"], schema=schema)


def _rollup_key_columns() -> list[Column[object]]:
    return [
        Column("bucket", DateTime(timezone=True), nullable=False),
        Column("journey_id", Text, nullable=False),
        Column("node_id", Text, nullable=False),
        Column("channel", Text, nullable=False),
        Column("template_id", Text, nullable=False),
        Column("variant_id", Text, nullable=False),
    ]


def _rollups(schema: str) -> None:
    op.create_table(
        "kpi_rollups",
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
        schema=schema,
    )
    op.create_index("kpi_rollups_journey", "kpi_rollups", ["journey_id", "bucket"], schema=schema)
    op.create_table(
        "revenue_rollups",
        *_rollup_key_columns(),
        Column("currency", Text, nullable=False),
        Column("revenue", Numeric, nullable=False, server_default="0"),
        PrimaryKeyConstraint(*_ROLLUP_KEY, "currency", name="revenue_rollups_pkey"),
        schema=schema,
    )
    op.create_table(
        "conversion_rollups",
        Column("bucket", DateTime(timezone=True), nullable=False),
        Column("definition_id", Text, nullable=False),
        Column("currency", Text, nullable=False),
        Column("attributed", Integer, nullable=False, server_default="0"),
        Column("unattributed", Integer, nullable=False, server_default="0"),
        Column("value", Numeric, nullable=False, server_default="0"),
        PrimaryKeyConstraint("bucket", "definition_id", "currency", name="conversion_rollups_pkey"),
        schema=schema,
    )


def downgrade() -> None:
    schema = service_schema()
    for table in ("conversion_rollups", "revenue_rollups", "kpi_rollups", "conversions"):
        op.drop_table(table, schema=schema)
    for table in ("touchpoints", "definitions"):
        op.drop_table(table, schema=schema)
    drop_bus_tables_v1(schema)

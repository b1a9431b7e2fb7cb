"""Channels, the send ledger, preferences, policies, time zones, inbox and outbox.

Revision ID: 0001

Written out as the tables stood when this revision was made: a revision creates what it
created then, whatever the models say now.
"""

from alembic import op
from sqlalchemy import Column, DateTime, Float, Integer, Text, text
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
        "channels",
        Column("name", Text, primary_key=True),
        Column("kind", Text, nullable=False),
        Column("config", JSONB, nullable=False),
        Column("secrets", JSONB, nullable=False),
        Column("rate_per_second", Float),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        schema=schema,
    )
    _sends(schema)
    op.create_table(
        "preferences",
        Column("profile_id", Text, primary_key=True),
        Column("consent", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("unsubscribed", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        schema=schema,
    )
    # A lone integer primary key: SQLAlchemy made it a serial (`policies_id_seq`).
    op.create_table(
        "policies",
        Column("id", Integer, primary_key=True),
        Column("document", JSONB, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        schema=schema,
    )
    op.create_table(
        "timezones",
        Column("profile_id", Text, primary_key=True),
        Column("timezone", Text, nullable=False),
        schema=schema,
    )


def _sends(schema: str) -> None:
    op.create_table(
        "sends",
        Column("message_id", Text, primary_key=True),
        Column("idempotency_key", Text, nullable=False, unique=True),
        Column("event_id", Text, nullable=False),
        Column("request_id", Text, nullable=False),
        Column("profile_id", Text, nullable=False),
        Column("channel", Text, nullable=False),
        Column("template_id", Text, nullable=False),
        Column("template_version", Integer, nullable=False),
        Column("variant_id", Text),
        Column("journey", JSONB, nullable=False),
        Column("subject", Text),
        Column("body", Text),
        Column("payload", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("recipient", Text),
        Column("behavior_at", DateTime(timezone=True)),
        Column("status", Text, nullable=False),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("due_at", DateTime(timezone=True), nullable=False),
        Column("lease_until", DateTime(timezone=True)),
        Column("decided_at", DateTime(timezone=True)),
        Column("sent_at", DateTime(timezone=True)),
        Column("provider_message_id", Text),
        Column("error", Text),
        Column("unsubscribed_at", DateTime(timezone=True)),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        schema=schema,
    )
    op.create_index(
        "sends_due",
        "sends",
        ["due_at"],
        schema=schema,
        postgresql_where=text("status IN ('pending', 'sending')"),
    )
    op.create_index("sends_profile_decided", "sends", ["profile_id", "decided_at"], schema=schema)
    op.create_index(
        "sends_provider_message", "sends", ["channel", "provider_message_id"], schema=schema
    )


def downgrade() -> None:
    schema = service_schema()
    for table in ("timezones", "policies", "preferences", "sends", "channels"):
        op.drop_table(table, schema=schema)
    drop_bus_tables_v1(schema)

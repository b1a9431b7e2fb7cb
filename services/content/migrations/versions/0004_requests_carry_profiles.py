"""Requests carry their profile's facts: content drops its copy of profiles and the requests
awaiting an address.

Revision ID: 0004
Revises: 0003

A request still waiting for an address when this runs is given up as the wait's expiry did: its
decision becomes `undeliverable` (nothing was emitted for it, and nothing will be). The
downgrade brings the tables back empty: content would then learn profiles again from the
`profile.updated` events to come.
"""

from alembic import op
from sqlalchemy import Column, DateTime, Text, text
from sqlalchemy.dialects.postgresql import JSONB

from libs.common.migrations import service_schema

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    schema = service_schema()
    op.execute(
        f"UPDATE {schema}.decisions SET outcome = 'undeliverable', decided_at = now() "
        "WHERE outcome = 'awaiting_address'"
    )
    op.drop_table("awaiting_addresses", schema=schema)
    op.drop_table("profiles", schema=schema)


def downgrade() -> None:
    schema = service_schema()
    op.create_table(
        "profiles",
        Column("profile_id", Text, primary_key=True),
        Column("traits", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("tags", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
        Column("lifecycle_stage", Text),
        Column("scores", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("top_category", Text),
        schema=schema,
    )
    op.create_table(
        "awaiting_addresses",
        Column("idempotency_key", Text, primary_key=True),
        Column("profile_id", Text, nullable=False),
        Column("channel", Text, nullable=False),
        Column("request", JSONB, nullable=False),
        Column("cause_id", Text, nullable=False),
        Column("traceparent", Text),
        Column("arrived_at", DateTime(timezone=True), nullable=False),
        schema=schema,
    )
    op.create_index(
        "awaiting_addresses_profile_channel",
        "awaiting_addresses",
        ["profile_id", "channel"],
        schema=schema,
    )
    op.create_index(
        "awaiting_addresses_arrived_at", "awaiting_addresses", ["arrived_at"], schema=schema
    )

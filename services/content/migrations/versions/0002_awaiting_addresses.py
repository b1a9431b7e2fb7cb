"""Requests awaiting an address: answered when the profile gets one, given up after a while.

Revision ID: 0002
Revises: 0001

Written out as the table stood when this revision was made.
"""

from alembic import op
from sqlalchemy import Column, DateTime, Text
from sqlalchemy.dialects.postgresql import JSONB

from libs.common.migrations import service_schema

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    schema = service_schema()
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


def downgrade() -> None:
    op.drop_table("awaiting_addresses", schema=service_schema())

"""Subscription topics: their definitions (`topics`), each profile's answers per topic and
channel (`preferences.topics`), and on each ledger row the topic its message belongs to and the
consent its traits carried (`sends.subscription_topic`, `sends.consent`).

Revision ID: 0007
Revises: 0006

Rows written before have no topic and no carried consent: they are decided as before.
"""

from alembic import op
from sqlalchemy import Boolean, Column, DateTime, Text, text
from sqlalchemy.dialects.postgresql import JSONB

from libs.common.migrations import service_schema

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    schema = service_schema()
    op.create_table(
        "topics",
        Column("topic_id", Text, primary_key=True),
        Column("name", Text, nullable=False),
        Column("description", Text, nullable=False, server_default=text("''")),
        Column("channels", JSONB, nullable=False),
        Column("default_subscribed", Boolean, nullable=False, server_default=text("true")),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        schema=schema,
    )
    op.add_column(
        "preferences",
        Column("topics", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        schema=schema,
    )
    op.add_column("sends", Column("subscription_topic", Text), schema=schema)
    op.add_column("sends", Column("consent", JSONB), schema=schema)


def downgrade() -> None:
    schema = service_schema()
    op.drop_column("sends", "consent", schema=schema)
    op.drop_column("sends", "subscription_topic", schema=schema)
    op.drop_column("preferences", "topics", schema=schema)
    op.drop_table("topics", schema=schema)

"""Engagement evidence per person, channel and local hour; the messages it is counted from; the
learned decisions (best time, best channel); and what a run carries between them.

Revision ID: 0002
Revises: 0001
"""

from alembic import op
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    ForeignKeyConstraint,
    Identity,
    Integer,
    SmallInteger,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from libs.common.migrations import service_schema

revision = "0002"
down_revision = "0001"

_NOW = text("now()")


def upgrade() -> None:
    schema = service_schema()
    _engagement(schema)
    _messages(schema)
    _decisions(schema)
    # The best-time decision a run carries to the sends it times, and each multi-channel send's
    # ranking of channels with how many were tried.
    op.add_column("runs", Column("timing", JSONB), schema=schema)
    op.add_column(
        "runs",
        Column("channels", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        schema=schema,
    )


def _engagement(schema: str) -> None:
    # Per person, channel and local hour: messages sent, and how many of them were opened or
    # clicked (each message once), at the hour it was sent.
    op.create_table(
        "engagement",
        Column("profile_id", Text, nullable=False),
        Column("channel", Text, nullable=False),
        Column("hour", SmallInteger, nullable=False),
        Column("sends", Integer, nullable=False),
        Column("engaged", Integer, nullable=False),
        schema=schema,
    )
    op.create_primary_key(
        "engagement_pkey", "engagement", ["profile_id", "channel", "hour"], schema=schema
    )
    # The same pooled over everyone, for sends whose hour the model did not choose: the
    # send-time model's population curve is fitted from these only.
    op.create_table(
        "untargeted_engagement",
        Column("channel", Text, nullable=False),
        Column("hour", SmallInteger, nullable=False),
        Column("sends", BigInteger, nullable=False),
        Column("engaged", BigInteger, nullable=False),
        schema=schema,
    )
    op.create_primary_key(
        "untargeted_engagement_pkey", "untargeted_engagement", ["channel", "hour"], schema=schema
    )


def _messages(schema: str) -> None:
    # One row per message counted: the hour it was sent at (null until `message.sent`) and
    # whether it was engaged with, so each message counts once whatever order its outcomes come
    # in. Rows untouched for the retention setting are deleted.
    op.create_table(
        "messages",
        Column("request_id", Text, primary_key=True),
        Column("profile_id", Text, nullable=False),
        Column("channel", Text, nullable=False),
        Column("targeted", Boolean, nullable=False),
        Column("hour", SmallInteger),
        Column("engaged", Boolean, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        schema=schema,
    )
    op.create_index("messages_profile", "messages", ["profile_id"], schema=schema)
    op.create_index("messages_updated_at", "messages", ["updated_at"], schema=schema)


def _decisions(schema: str) -> None:
    # Every learned choice with its probability, for offline evaluation of other policies.
    op.create_table(
        "decisions",
        Column("id", BigInteger, Identity(always=False), primary_key=True),
        Column("journey_id", Text, nullable=False),
        Column("version", Integer, nullable=False),
        Column("node_id", Text, nullable=False),
        Column("profile_id", Text, nullable=False),
        Column("run", Integer, nullable=False),
        Column("kind", Text, nullable=False),  # send_time, channel
        Column("decided_at", DateTime(timezone=True), nullable=False),
        Column("explored", Boolean, nullable=False),
        Column("probability", Double, nullable=False),
        # send_time: the local hour chosen and when the wait ends; channel: the one it is for.
        Column("hour", SmallInteger),
        Column("wake_at", DateTime(timezone=True)),
        Column("channel", Text),
        # channel: the order to try, every eligible channel's probability, the request made.
        Column("ranking", JSONB),
        Column("probabilities", JSONB),
        Column("request_id", Text),
        ForeignKeyConstraint(
            ["journey_id"],
            [f"{schema}.journeys.id"],
            ondelete="CASCADE",
            name="decisions_journey_fkey",
        ),
        schema=schema,
    )
    op.create_index(
        "decisions_journey_profile", "decisions", ["journey_id", "profile_id"], schema=schema
    )
    op.create_index("decisions_profile", "decisions", ["profile_id"], schema=schema)
    op.create_index("decisions_decided_at", "decisions", ["decided_at"], schema=schema)


def downgrade() -> None:
    schema = service_schema()
    op.drop_column("runs", "channels", schema=schema)
    op.drop_column("runs", "timing", schema=schema)
    for table in ("decisions", "messages", "untargeted_engagement", "engagement"):
        op.drop_table(table, schema=schema)

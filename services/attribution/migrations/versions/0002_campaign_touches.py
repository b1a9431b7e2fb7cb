"""Campaign touches: behaviours that arrived with UTM tags (Segment's `context.campaign`).

Revision ID: 0002
Revises: 0001
"""

from alembic import op
from sqlalchemy import Column, DateTime, Text

from libs.common.migrations import service_schema

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    schema = service_schema()
    op.create_table(
        "campaign_touches",
        Column("behaviour_id", Text, primary_key=True),
        Column("profile_id", Text, nullable=False),
        Column("occurred_at", DateTime(timezone=True), nullable=False),
        Column("channel", Text, nullable=False),
        Column("source", Text),
        Column("medium", Text),
        Column("campaign", Text),
        schema=schema,
    )
    op.create_index(
        "campaign_touches_profile_time",
        "campaign_touches",
        ["profile_id", "occurred_at"],
        schema=schema,
    )
    op.create_index("campaign_touches_time", "campaign_touches", ["occurred_at"], schema=schema)


def downgrade() -> None:
    op.drop_table("campaign_touches", schema=service_schema())

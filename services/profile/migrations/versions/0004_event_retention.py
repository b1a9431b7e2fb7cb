"""Profile events by when they happened, for their retention's deletes
(`profile_event_retention_days`).

Revision ID: 0004
Revises: 0003
"""

from alembic import op

from libs.common.migrations import service_schema

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_index(
        "profile_events_occurred_at", "profile_events", ["occurred_at"], schema=service_schema()
    )


def downgrade() -> None:
    op.drop_index("profile_events_occurred_at", "profile_events", schema=service_schema())

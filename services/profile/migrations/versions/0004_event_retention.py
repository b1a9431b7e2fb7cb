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
    # Built without locking out writes (a big table takes a while); outside a transaction.
    with op.get_context().autocommit_block():
        op.create_index(
            "profile_events_occurred_at",
            "profile_events",
            ["occurred_at"],
            schema=service_schema(),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    op.drop_index("profile_events_occurred_at", "profile_events", schema=service_schema())

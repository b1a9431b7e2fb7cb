"""Behaviours by when they happened, for their retention's deletes
(`segment_behaviour_retention_days`).

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from libs.common.migrations import service_schema

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    # Built without locking out writes (a big table takes a while); outside a transaction.
    with op.get_context().autocommit_block():
        op.create_index(
            "behaviours_occurred_at",
            "behaviours",
            ["occurred_at"],
            schema=service_schema(),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    op.drop_index("behaviours_occurred_at", "behaviours", schema=service_schema())

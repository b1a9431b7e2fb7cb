"""Decisions and counted rewards by time, for their retention's deletes
(`content_decision_retention_days`).

Revision ID: 0005
Revises: 0004
"""

from alembic import op

from libs.common.migrations import service_schema

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    schema = service_schema()
    # Built without locking out writes (a big table takes a while); outside a transaction.
    with op.get_context().autocommit_block():
        op.create_index(
            "decisions_decided_at",
            "decisions",
            ["decided_at"],
            schema=schema,
            postgresql_concurrently=True,
        )
        op.create_index(
            "rewards_counted_at",
            "rewards",
            ["counted_at"],
            schema=schema,
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    schema = service_schema()
    op.drop_index("rewards_counted_at", "rewards", schema=schema)
    op.drop_index("decisions_decided_at", "decisions", schema=schema)

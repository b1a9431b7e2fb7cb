"""Finished runs by their last change, for their retention's deletes
(`journey_run_retention_days`).

Revision ID: 0005
Revises: 0004
"""

from alembic import op
from sqlalchemy import text

from libs.common.migrations import service_schema

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    # Built without locking out writes (a big table takes a while); outside a transaction.
    with op.get_context().autocommit_block():
        op.create_index(
            "runs_finished_updated_at",
            "runs",
            ["updated_at"],
            schema=service_schema(),
            postgresql_where=text("status NOT IN ('active', 'waiting', 'held')"),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    op.drop_index("runs_finished_updated_at", "runs", schema=service_schema())

"""Finished sends by when they were created, for the ledger's retention
(`dispatch_send_retention_days`).

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
            "sends_finished_created_at",
            "sends",
            ["created_at"],
            schema=service_schema(),
            postgresql_where=text("status NOT IN ('pending', 'sending')"),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    op.drop_index("sends_finished_created_at", "sends", schema=service_schema())

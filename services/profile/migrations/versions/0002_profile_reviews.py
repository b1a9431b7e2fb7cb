"""Profiles are reviewed when their lifecycle stage or RFM recency may have aged.

Revision ID: 0002
Revises: 0001

Existing profiles are due at once: the first review announces what has aged since they were
last saved.
"""

from alembic import op
from sqlalchemy import Column, DateTime, text

from libs.common.migrations import service_schema

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    schema = service_schema()
    op.add_column("profiles", Column("reviewed_at", DateTime(timezone=True)), schema=schema)
    op.add_column("profiles", Column("review_due_at", DateTime(timezone=True)), schema=schema)
    op.create_index(
        "profiles_review_due_at",
        "profiles",
        ["review_due_at"],
        schema=schema,
        postgresql_where=text("review_due_at IS NOT NULL"),
    )
    op.execute(
        f"UPDATE {schema}.profiles SET reviewed_at = updated_at, review_due_at = now() "
        "WHERE reviewed_at IS NULL"
    )


def downgrade() -> None:
    schema = service_schema()
    op.drop_index("profiles_review_due_at", table_name="profiles", schema=schema)
    op.drop_column("profiles", "review_due_at", schema=schema)
    op.drop_column("profiles", "reviewed_at", schema=schema)

"""Profiles are reviewed when their lifecycle stage or RFM recency may have aged.

Revision ID: 0002
Revises: 0001

0001 creates the tables from the current models, so on a new database the columns are there
already; on a database made before them, they are added. Existing profiles are due at once:
the first review announces what has aged since they were last saved.
"""

from alembic import op

from libs.common.migrations import service_schema

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    schema = service_schema()
    op.execute(
        f"ALTER TABLE {schema}.profiles ADD COLUMN IF NOT EXISTS reviewed_at timestamptz, "
        "ADD COLUMN IF NOT EXISTS review_due_at timestamptz"
    )
    op.execute(
        f"CREATE INDEX IF NOT EXISTS profiles_review_due_at ON {schema}.profiles "
        "(review_due_at) WHERE review_due_at IS NOT NULL"
    )
    op.execute(
        f"UPDATE {schema}.profiles SET reviewed_at = updated_at, review_due_at = now() "
        "WHERE reviewed_at IS NULL"
    )


def downgrade() -> None:
    schema = service_schema()
    op.execute(f"DROP INDEX IF EXISTS {schema}.profiles_review_due_at")
    op.execute(
        f"ALTER TABLE {schema}.profiles DROP COLUMN IF EXISTS reviewed_at, "
        "DROP COLUMN IF EXISTS review_due_at"
    )

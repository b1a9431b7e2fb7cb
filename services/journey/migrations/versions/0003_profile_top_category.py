"""The profile copy's top category: the first of `features.top_categories`, as the shared
profile read model keeps it (libs.common.profiles).

Revision ID: 0003
Revises: 0002
"""

from alembic import op
from sqlalchemy import Column, Text

from libs.common.migrations import service_schema

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.add_column("profiles", Column("top_category", Text), schema=service_schema())


def downgrade() -> None:
    op.drop_column("profiles", "top_category", schema=service_schema())

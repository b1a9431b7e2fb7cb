"""Requests awaiting an address: answered when the profile gets one, given up after a while.

Revision ID: 0002
Revises: 0001
"""

from alembic import op
from sqlalchemy import MetaData

from libs.common.migrations import service_schema
from services.content.models import awaiting_addresses_table

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    metadata = MetaData(schema=service_schema())
    awaiting_addresses_table(metadata).create(op.get_bind())


def downgrade() -> None:
    op.drop_table("awaiting_addresses", schema=service_schema())

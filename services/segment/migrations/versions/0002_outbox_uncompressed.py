"""Outbox rows are stored out of line without compression: see libs/common/bus/tables.py.

Revision ID: 0002
Revises: 0001
"""

from libs.common.bus.tables import store_outbox_compressed, store_outbox_uncompressed
from libs.common.migrations import service_schema

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    store_outbox_uncompressed(service_schema())


def downgrade() -> None:
    store_outbox_compressed(service_schema())

"""Outbox rows are stored out of line without compression: see libs/common/bus/tables.py.

Revision ID: 0003
Revises: 0002
"""

from libs.common.bus.tables import store_outbox_compressed, store_outbox_uncompressed
from libs.common.migrations import service_schema

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    store_outbox_uncompressed(service_schema())


def downgrade() -> None:
    store_outbox_compressed(service_schema())

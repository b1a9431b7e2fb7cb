"""Counters, inbox and outbox.

Revision ID: 0001
"""

from alembic import op
from sqlalchemy import MetaData

from libs.common.bus.tables import create_bus_tables
from libs.common.migrations import service_schema
from tests.integration.counter_service.models import counters_table

revision = "0001"
down_revision = None


def upgrade() -> None:
    schema = service_schema()
    create_bus_tables(schema)
    counters_table(MetaData(schema=schema)).create(op.get_bind())


def downgrade() -> None:
    op.drop_table("counters", schema=service_schema())

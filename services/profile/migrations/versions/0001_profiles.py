"""Profiles, identities, merged profiles, event history, inbox and outbox.

Revision ID: 0001
"""

from alembic import op

from libs.common.bus.tables import create_bus_tables
from libs.common.migrations import service_schema
from services.profile.models import profile_metadata

revision = "0001"
down_revision = None


def upgrade() -> None:
    schema = service_schema()
    create_bus_tables(schema)
    profile_metadata(schema).create_all(op.get_bind())


def downgrade() -> None:
    schema = service_schema()
    profile_metadata(schema).drop_all(op.get_bind())
    op.drop_table("outbox", schema=schema)
    op.drop_table("inbox", schema=schema)

"""Templates, versions, bandit state, rewards, profiles, decisions, inbox and outbox.

Revision ID: 0001
"""

from alembic import op
from sqlalchemy import MetaData

from libs.common.bus.tables import create_bus_tables
from libs.common.migrations import service_schema
from services.content.models import all_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    schema = service_schema()
    create_bus_tables(schema)
    metadata = MetaData(schema=schema)
    all_tables(metadata)
    metadata.create_all(op.get_bind())


def downgrade() -> None:
    schema = service_schema()
    for table in (
        "decisions",
        "profiles",
        "rewards",
        "variant_stats",
        "template_versions",
        "templates",
    ):
        op.drop_table(table, schema=schema)

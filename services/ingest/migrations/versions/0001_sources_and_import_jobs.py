"""Sources and import jobs.

Revision ID: 0001
"""

from alembic import op
from sqlalchemy import MetaData

from libs.common.migrations import service_schema
from services.ingest.models import import_jobs_table, sources_table

revision = "0001"
down_revision = None


def upgrade() -> None:
    metadata = MetaData(schema=service_schema())
    sources_table(metadata)
    import_jobs_table(metadata)
    metadata.create_all(op.get_bind())


def downgrade() -> None:
    schema = service_schema()
    op.drop_table("import_jobs", schema=schema)
    op.drop_table("sources", schema=schema)

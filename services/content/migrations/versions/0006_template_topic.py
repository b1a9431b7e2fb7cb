"""The subscription topic a template's messages belong to, per version
(`template_versions.topic`).

Revision ID: 0006
Revises: 0005

Versions written before have none: their messages take the request's topic, if any.
"""

from alembic import op
from sqlalchemy import Column, Text

from libs.common.migrations import service_schema

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.add_column("template_versions", Column("topic", Text), schema=service_schema())


def downgrade() -> None:
    op.drop_column("template_versions", "topic", schema=service_schema())

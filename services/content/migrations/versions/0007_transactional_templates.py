"""A template version marked transactional: `template_versions.transactional`.

Revision ID: 0007
Revises: 0006

A transactional template's messages (a receipt, a password reset) carry
`contact.transactional` on `message.rendered`, whatever the journey said: dispatch never caps,
arbitrates or holds them. Versions written before are marketing templates.
"""

from alembic import op
from sqlalchemy import Boolean, Column, text

from libs.common.migrations import service_schema

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.add_column(
        "template_versions",
        Column("transactional", Boolean, nullable=False, server_default=text("false")),
        schema=service_schema(),
    )


def downgrade() -> None:
    op.drop_column("template_versions", "transactional", schema=service_schema())

"""Single sign-ons under way: what the OIDC callback must find again.

Revision ID: 0003
Revises: 0002

Written out as the table stood when this revision was made.
"""

from alembic import op
from sqlalchemy import Column, DateTime, Text

from libs.common.migrations import service_schema

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    schema = service_schema()
    op.create_table(
        "oidc_sign_ins",
        Column("state_hash", Text, primary_key=True),
        Column("browser_hash", Text, nullable=False),
        Column("nonce", Text, nullable=False),
        Column("code_verifier", Text, nullable=False),
        Column("next", Text, nullable=False),
        Column("expires_at", DateTime(timezone=True), nullable=False),
        schema=schema,
    )
    op.create_index("oidc_sign_ins_expires_at", "oidc_sign_ins", ["expires_at"], schema=schema)


def downgrade() -> None:
    schema = service_schema()
    op.drop_index("oidc_sign_ins_expires_at", "oidc_sign_ins", schema=schema)
    op.drop_table("oidc_sign_ins", schema=schema)

"""Provider access tokens shared by every replica: one row per credential, with a refresh lease.

Revision ID: 0006
Revises: 0005

WeChat and WeCom hand out one access token per app at a time, and fetching a new one retires
the last; each replica fetching its own made replicas invalidate each other's tokens and spend
the daily quota of fetches. The row holds the token and its expiry; the replica that refreshes
it holds the lease (`refreshing_by` until `refreshing_until`) while the others keep reading.
"""

from alembic import op
from sqlalchemy import Column, DateTime, Text, text

from libs.common.migrations import service_schema

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "access_tokens",
        Column("credential", Text, primary_key=True),
        Column("access_token", Text),
        Column("expires_at", DateTime(timezone=True)),
        Column("refreshing_by", Text),
        Column("refreshing_until", DateTime(timezone=True)),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        schema=service_schema(),
    )


def downgrade() -> None:
    op.drop_table("access_tokens", schema=service_schema())

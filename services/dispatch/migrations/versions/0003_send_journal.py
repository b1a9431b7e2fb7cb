"""The send journal: sender heartbeats, each claimed row's owner and its attempt's start.

Revision ID: 0003
Revises: 0002

A sender process writes its heartbeat to `senders`; a row it claims names it (`sends.owner`);
`sends.attempt_started_at` is committed right before the row's provider call and cleared with
its result. Rows the previous release left `sending` have no owner and keep their `lease_until`,
which this release still honours for them; it sets no lease itself. The downgrade gives the rows
this release left `sending` a lease that has run out, so the previous release sends them again.
"""

from alembic import op
from sqlalchemy import Column, DateTime, Text, text

from libs.common.migrations import service_schema

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    schema = service_schema()
    op.create_table(
        "senders",
        Column("owner", Text, primary_key=True),
        Column("started_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        Column("heartbeat_at", DateTime(timezone=True), nullable=False),
        schema=schema,
    )
    op.add_column("sends", Column("owner", Text), schema=schema)
    op.add_column("sends", Column("attempt_started_at", DateTime(timezone=True)), schema=schema)


def downgrade() -> None:
    schema = service_schema()
    op.execute(
        f"UPDATE {schema}.sends SET lease_until = now() "
        "WHERE status = 'sending' AND lease_until IS NULL"
    )
    op.drop_column("sends", "attempt_started_at", schema=schema)
    op.drop_column("sends", "owner", schema=schema)
    op.drop_table("senders", schema=schema)

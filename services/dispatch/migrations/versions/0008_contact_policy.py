"""The contact policy on each ledger row: `priority`, `on_conflict`, `transactional` and the
arbitration hold (`held_until`).

Revision ID: 0008
Revises: 0007

A row carries its message's contact rule (`message.rendered` `contact`) so that the sender can
arbitrate between one person's marketing messages: the higher priority takes the cap, a loser
is dropped or deferred by its own `on_conflict`, and a transactional message is neither capped
nor counted. `held_until` is when the arbitration window of the person's first held message
ends: the messages that arrive meanwhile are held as long, and decided together. Rows written
before are marketing messages of the default priority, dropped when they lose.
"""

from alembic import op
from sqlalchemy import Boolean, Column, DateTime, Integer, Text, text

from libs.common.migrations import service_schema

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    schema = service_schema()
    op.add_column(
        "sends",
        Column("priority", Integer, nullable=False, server_default=text("50")),
        schema=schema,
    )
    op.add_column(
        "sends",
        Column("on_conflict", Text, nullable=False, server_default=text("'drop'")),
        schema=schema,
    )
    op.add_column(
        "sends",
        Column("transactional", Boolean, nullable=False, server_default=text("false")),
        schema=schema,
    )
    op.add_column("sends", Column("held_until", DateTime(timezone=True)), schema=schema)


def downgrade() -> None:
    schema = service_schema()
    for name in ("held_until", "transactional", "on_conflict", "priority"):
        op.drop_column("sends", name, schema=schema)

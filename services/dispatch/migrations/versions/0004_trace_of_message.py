"""The trace a message belongs to: `sends.traceparent`.

Revision ID: 0004
Revises: 0003

The W3C trace context of the `message.rendered` a ledger row came from (dispatch's own span in
its trace when tracing is on), so that each call to the provider, whenever it is made, and the
outcome it reports belong to the trace of the behaviour that caused the message. Rows written
before have none.
"""

from alembic import op
from sqlalchemy import Column, Text

from libs.common.migrations import service_schema

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.add_column("sends", Column("traceparent", Text), schema=service_schema())


def downgrade() -> None:
    op.drop_column("sends", "traceparent", schema=service_schema())

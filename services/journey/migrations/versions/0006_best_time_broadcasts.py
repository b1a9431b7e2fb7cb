"""Broadcasts at each person's best hour: the window an enrolment takes their best hours in.

Revision ID: 0006
Revises: 0005
"""

from alembic import op
from sqlalchemy import Column, Interval

from libs.common.migrations import service_schema

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    # Null: each member at the enrolment's fixed time or local time, as before.
    op.add_column("enrolments", Column("best_time_within", Interval), schema=service_schema())


def downgrade() -> None:
    op.drop_column("enrolments", "best_time_within", schema=service_schema())

"""Quiet hours by the zone the message names: `sends.time_zone`, and no per-profile zones.

Revision ID: 0002
Revises: 0001

A message carries its profile's time zone (`message.rendered` `time_zone`), which its ledger
row now keeps; dispatch no longer copies zones from `profile.updated`. The rows not sent yet
take the zone dispatch held for their profile, so a message waiting out quiet hours keeps
waiting in the same clock. The downgrade gives each profile the zone of its latest message
that named one.
"""

from alembic import op
from sqlalchemy import Column, Text

from libs.common.migrations import service_schema

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    schema = service_schema()
    op.add_column("sends", Column("time_zone", Text), schema=schema)
    op.execute(
        f"UPDATE {schema}.sends s SET time_zone = z.timezone FROM {schema}.timezones z "
        "WHERE z.profile_id = s.profile_id AND s.status IN ('pending', 'sending')"
    )
    op.drop_table("timezones", schema=schema)


def downgrade() -> None:
    schema = service_schema()
    op.create_table(
        "timezones",
        Column("profile_id", Text, primary_key=True),
        Column("timezone", Text, nullable=False),
        schema=schema,
    )
    op.execute(
        f"INSERT INTO {schema}.timezones (profile_id, timezone) "
        f"SELECT DISTINCT ON (profile_id) profile_id, time_zone FROM {schema}.sends "
        "WHERE time_zone IS NOT NULL ORDER BY profile_id, created_at DESC"
    )
    op.drop_column("sends", "time_zone", schema=schema)

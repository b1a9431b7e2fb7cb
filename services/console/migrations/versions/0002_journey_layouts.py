"""Where the journey canvas draws each node: one row per journey the console has laid out.

Revision ID: 0002

Written out as the table stood when this revision was made. The positions are the console's
own (decision 0028): the journey service keeps the graph, never how it is drawn.
"""

from alembic import op
from sqlalchemy import Column, DateTime, Text, text
from sqlalchemy.dialects.postgresql import JSONB

from libs.common.migrations import service_schema

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "journey_layouts",
        Column("journey_id", Text, primary_key=True),
        Column("positions", JSONB, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        schema=service_schema(),
    )


def downgrade() -> None:
    op.drop_table("journey_layouts", schema=service_schema())

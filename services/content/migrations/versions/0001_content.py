"""Templates, versions, bandit state, rewards, profiles, decisions, inbox and outbox.

Revision ID: 0001

Written out as the tables stood when this revision was made: a revision creates what it
created then, whatever the models say now.
"""

from alembic import op
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Integer,
    PrimaryKeyConstraint,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from libs.common.bus.frozen_tables import create_bus_tables_v1, drop_bus_tables_v1
from libs.common.migrations import service_schema

revision = "0001"
down_revision = None

_NOW = text("now()")


def upgrade() -> None:
    schema = service_schema()
    create_bus_tables_v1(schema)
    _templates(schema)
    op.create_table(
        "variant_stats",
        Column("template_id", Text, nullable=False),
        Column("variant_id", Text, nullable=False),
        Column("trials", BigInteger, nullable=False, server_default="0"),
        Column("clicks", BigInteger, nullable=False, server_default="0"),
        Column("conversions", Float, nullable=False, server_default="0"),
        PrimaryKeyConstraint("template_id", "variant_id", name="variant_stats_pkey"),
        schema=schema,
    )
    op.create_table(
        "rewards",
        Column("message_id", Text, nullable=False),
        Column("kind", Text, nullable=False),
        Column("counted_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        PrimaryKeyConstraint("message_id", "kind", name="rewards_pkey"),
        schema=schema,
    )
    op.create_table(
        "profiles",
        Column("profile_id", Text, primary_key=True),
        Column("traits", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("tags", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
        Column("lifecycle_stage", Text),
        Column("scores", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        schema=schema,
    )
    op.create_table(
        "decisions",
        Column("idempotency_key", Text, primary_key=True),
        Column("request_id", Text, nullable=False),
        Column("profile_id", Text, nullable=False),
        Column("template_id", Text, nullable=False),
        Column("template_version", Integer, nullable=False),
        Column("variant_id", Text),
        Column("outcome", Text, nullable=False),
        Column("decided_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        schema=schema,
    )
    op.create_index("decisions_profile", "decisions", ["profile_id"], schema=schema)
    op.create_index(
        "decisions_template_outcome", "decisions", ["template_id", "outcome"], schema=schema
    )


def _templates(schema: str) -> None:
    op.create_table(
        "templates",
        Column("id", Text, primary_key=True),
        Column("name", Text, nullable=False),
        Column("channel", Text, nullable=False),
        Column("version", Integer, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        schema=schema,
    )
    op.create_index("templates_channel", "templates", ["channel"], schema=schema)
    op.create_table(
        "template_versions",
        Column("template_id", Text, nullable=False),
        Column("version", Integer, nullable=False),
        Column("defaults", JSONB, nullable=False),
        Column("variants", JSONB, nullable=False),
        Column("reward", Text, nullable=False),
        Column("holdout_share", Float, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        PrimaryKeyConstraint("template_id", "version", name="template_versions_pkey"),
        ForeignKeyConstraint(
            ["template_id"],
            [f"{schema}.templates.id"],
            name="template_versions_template_id_fkey",
            ondelete="CASCADE",
        ),
        schema=schema,
    )


def downgrade() -> None:
    schema = service_schema()
    for table in (
        "decisions",
        "profiles",
        "rewards",
        "variant_stats",
        "template_versions",
        "templates",
    ):
        op.drop_table(table, schema=schema)
    drop_bus_tables_v1(schema)

"""Users, sessions and the audit log.

Revision ID: 0001

Written out as the tables stood when this revision was made: a revision creates what it
created then, whatever the models say now. The console consumes no events and writes no
outbox, so it has no bus tables.
"""

from alembic import op
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from libs.common.migrations import service_schema

revision = "0001"
down_revision = None

_NOW = text("now()")


def upgrade() -> None:
    schema = service_schema()
    op.create_table(
        "users",
        Column("id", Text, primary_key=True),
        Column("email", Text, nullable=False, unique=True),
        Column("password_hash", Text, nullable=False),
        Column("role", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        CheckConstraint("role IN ('admin', 'marketer', 'analyst')", name="users_role"),
        schema=schema,
    )
    op.create_table(
        "sessions",
        Column("token_hash", Text, primary_key=True),
        Column("user_id", Text, nullable=False),
        Column("csrf_token", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        Column("expires_at", DateTime(timezone=True), nullable=False),
        ForeignKeyConstraint(
            ["user_id"], [f"{schema}.users.id"], ondelete="CASCADE", name="sessions_user"
        ),
        schema=schema,
    )
    op.create_index("sessions_expires_at", "sessions", ["expires_at"], schema=schema)
    op.create_table(
        "audit_log",
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("at", DateTime(timezone=True), nullable=False, server_default=_NOW),
        Column("actor_id", Text, nullable=False),
        Column("actor_email", Text, nullable=False),
        Column("action", Text, nullable=False),
        Column("target", Text, nullable=False),
        Column("before", JSONB),
        Column("after", JSONB),
        schema=schema,
    )


def downgrade() -> None:
    schema = service_schema()
    op.drop_table("audit_log", schema=schema)
    op.drop_index("sessions_expires_at", "sessions", schema=schema)
    op.drop_table("sessions", schema=schema)
    op.drop_table("users", schema=schema)

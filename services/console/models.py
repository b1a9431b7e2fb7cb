"""The console's tables: its users, their sessions, and the audit log of every change (revision
0001); the single sign-ons under way (0002)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

ROLES = ("admin", "marketer", "analyst")


def users_table(metadata: MetaData) -> Table:
    """One row per person who may sign in: the email (lower case), argon2 hash and role."""
    return Table(
        "users",
        metadata,
        Column("id", Text, primary_key=True),
        Column("email", Text, nullable=False, unique=True),
        Column("password_hash", Text, nullable=False),
        Column("role", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        CheckConstraint("role IN ('admin', 'marketer', 'analyst')", name="users_role"),
    )


def sessions_table(metadata: MetaData) -> Table:
    """One row per signed-in browser: the SHA-256 of its cookie (never the cookie itself) and
    the CSRF token its forms must send back."""
    return Table(
        "sessions",
        metadata,
        Column("token_hash", Text, primary_key=True),
        Column(
            "user_id",
            Text,
            ForeignKey("users.id", ondelete="CASCADE", name="sessions_user"),
            nullable=False,
        ),
        Column("csrf_token", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        Column("expires_at", DateTime(timezone=True), nullable=False),
        Index("sessions_expires_at", "expires_at"),
    )


def audit_log_table(metadata: MetaData) -> Table:
    """Every change made through the console: who, what, and the thing before and after."""
    return Table(
        "audit_log",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        Column("actor_id", Text, nullable=False),
        Column("actor_email", Text, nullable=False),
        Column("action", Text, nullable=False),
        Column("target", Text, nullable=False),
        Column("before", JSONB),
        Column("after", JSONB),
    )


def journey_layouts_table(metadata: MetaData) -> Table:
    """Where the journey canvas draws each node of a journey: `{"entry": {"x", "y"}, "nodes":
    {node id: {"x", "y"}}}`. The console's own: the journey service keeps the graph alone."""
    return Table(
        "journey_layouts",
        metadata,
        Column("journey_id", Text, primary_key=True),
        Column("positions", JSONB, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )


def oidc_sign_ins_table(metadata: MetaData) -> Table:
    """One row per sign-in sent to the OIDC provider and not yet back: what the callback must
    find again (the state, by its SHA-256; the browser that started it, by its cookie's
    SHA-256; the nonce and the PKCE verifier). Used once, then deleted."""
    return Table(
        "oidc_sign_ins",
        metadata,
        Column("state_hash", Text, primary_key=True),
        Column("browser_hash", Text, nullable=False),
        Column("nonce", Text, nullable=False),
        Column("code_verifier", Text, nullable=False),
        Column("next", Text, nullable=False),
        Column("expires_at", DateTime(timezone=True), nullable=False),
        Index("oidc_sign_ins_expires_at", "expires_at"),
    )

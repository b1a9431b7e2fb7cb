"""WeChat official accounts whose callbacks ingest receives, and the nonces it has seen.

Revision ID: 0002
Revises: 0001

An account is known by its app id and belongs to a source (its calls carry that source's id);
`token` checks the callbacks' signatures and `encoding_aes_key`, when set, decrypts them. A
callback's (timestamp, nonce) is kept for the replay window, so a replayed one is refused on
every replica.
"""

from alembic import op
from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, PrimaryKeyConstraint, Text, text

from libs.common.migrations import service_schema

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    schema = service_schema()
    op.create_table(
        "wechat_accounts",
        Column("app_id", Text, primary_key=True),
        Column(
            "source_id",
            Text,
            ForeignKey(f"{schema}.sources.id", ondelete="CASCADE"),
            nullable=False,
        ),
        Column("token", Text, nullable=False),
        Column("encoding_aes_key", Text),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        schema=schema,
    )
    op.create_table(
        "wechat_nonces",
        Column("app_id", Text, nullable=False),
        Column("timestamp", BigInteger, nullable=False),
        Column("nonce", Text, nullable=False),
        Column("seen_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        PrimaryKeyConstraint("app_id", "timestamp", "nonce"),
        schema=schema,
    )
    op.create_index("wechat_nonces_seen_at", "wechat_nonces", ["seen_at"], schema=schema)


def downgrade() -> None:
    schema = service_schema()
    op.drop_table("wechat_nonces", schema=schema)
    op.drop_table("wechat_accounts", schema=schema)

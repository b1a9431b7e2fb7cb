"""Ingest's tables: sources with their hashed write keys, import jobs, and the WeChat official
accounts whose callbacks it receives with the nonces it has seen (revision 0002)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB


def sources_table(metadata: MetaData) -> Table:
    """Systems allowed to send events; only a hash of each write key is kept."""
    return Table(
        "sources",
        metadata,
        Column("id", Text, primary_key=True),
        Column("name", Text, nullable=False),
        Column("key_hash", Text, nullable=False, unique=True),
        Column("key_prefix", Text, nullable=False),
        Column("enabled", Boolean, nullable=False, server_default="true"),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


def import_jobs_table(metadata: MetaData) -> Table:
    """One row per `POST /v1/import`: its counts and the first errors, readable afterwards."""
    return Table(
        "import_jobs",
        metadata,
        Column("id", Text, primary_key=True),
        Column("source_id", Text, nullable=False, index=True),
        Column("format", Text, nullable=False),
        Column("status", Text, nullable=False),
        Column("accepted", Integer, nullable=False, server_default="0"),
        Column("rejected", Integer, nullable=False, server_default="0"),
        Column("errors", JSONB, nullable=False, server_default="[]"),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("finished_at", DateTime(timezone=True)),
    )


def wechat_accounts_table(metadata: MetaData) -> Table:
    """Official accounts by app id: the source their calls carry, the token that signs their
    callbacks and, for the encrypted mode, the EncodingAESKey."""
    sources = f"{metadata.schema}.sources.id" if metadata.schema else "sources.id"
    return Table(
        "wechat_accounts",
        metadata,
        Column("app_id", Text, primary_key=True),
        Column("source_id", Text, ForeignKey(sources, ondelete="CASCADE"), nullable=False),
        Column("token", Text, nullable=False),
        Column("encoding_aes_key", Text),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


def wechat_nonces_table(metadata: MetaData) -> Table:
    """The (timestamp, nonce) of each callback accepted within the replay window."""
    return Table(
        "wechat_nonces",
        metadata,
        Column("app_id", Text, nullable=False),
        Column("timestamp", BigInteger, nullable=False),
        Column("nonce", Text, nullable=False),
        Column("seen_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        PrimaryKeyConstraint("app_id", "timestamp", "nonce"),
        Index("wechat_nonces_seen_at", "seen_at"),
    )

"""The dispatch service's tables: channel configs, the send ledger, consent, policies.

Revision 0002 gave each ledger row the time zone its message named (`sends.time_zone`) and
dropped the per-profile `timezones` copied from `profile.updated`. Revision 0003 added the send
journal: the sender processes' heartbeats (`senders`) and, on each ledger row, the process that
claimed it (`owner`) and when its provider call started (`attempt_started_at`). Later
revisions write theirs out (0005: finished sends indexed by `created_at`, for their retention;
0006: the access tokens every replica shares, `access_tokens`; 0007: `preferences.topics`,
`sends.subscription_topic` and `sends.consent`; 0008: each ledger row's contact rule and
arbitration hold). `topics` is as 0007 made it, `sends` as 0008 leaves it.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

_ACTIVE = text("status IN ('pending', 'sending')")


def channels_table(metadata: MetaData) -> Table:
    """One row per channel a message can name: its adapter kind, settings and secrets."""
    return Table(
        "channels",
        metadata,
        Column("name", Text, primary_key=True),
        Column("kind", Text, nullable=False),
        Column("config", JSONB, nullable=False),
        # Kept apart from `config` so no query that answers the API can return them by mistake.
        Column("secrets", JSONB, nullable=False),
        Column("rate_per_second", Float),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )


def sends_table(metadata: MetaData) -> Table:
    """The send ledger: one row per idempotency key, from rendered to its last outcome."""
    return Table(
        "sends",
        metadata,
        Column("message_id", Text, primary_key=True),
        Column("idempotency_key", Text, nullable=False, unique=True),
        Column("event_id", Text, nullable=False),
        Column("request_id", Text, nullable=False),
        Column("profile_id", Text, nullable=False),
        Column("channel", Text, nullable=False),
        Column("template_id", Text, nullable=False),
        Column("template_version", Integer, nullable=False),
        Column("variant_id", Text),
        Column("journey", JSONB, nullable=False),
        Column("subject", Text),
        Column("body", Text),
        Column("payload", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("recipient", Text),
        Column("behavior_at", DateTime(timezone=True)),
        # The IANA zone the message named (`message.rendered` `time_zone`): its quiet hours'.
        Column("time_zone", Text),
        # pending → sending → sent → delivered, or failed / suppressed.
        Column("status", Text, nullable=False),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("due_at", DateTime(timezone=True), nullable=False),
        # Set by the release before the send journal; read only for the rows it left `sending`.
        Column("lease_until", DateTime(timezone=True)),
        Column("decided_at", DateTime(timezone=True)),
        Column("sent_at", DateTime(timezone=True)),
        Column("provider_message_id", Text),
        Column("error", Text),
        Column("unsubscribed_at", DateTime(timezone=True)),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        # The sender process that claimed the row (`sending`); its heartbeat says if it lives.
        Column("owner", Text),
        # Set, durably, right before the provider call; cleared with the call's result. Set on a
        # row whose owner died: the call may or may not have reached the provider.
        Column("attempt_started_at", DateTime(timezone=True)),
        # The W3C trace context of the message's trace (revision 0004).
        Column("traceparent", Text),
        # The subscription topic the message belongs to, and the consent its traits carried
        # (revision 0007).
        Column("subscription_topic", Text),
        Column("consent", JSONB),
        # The message's contact rule: its rank against the person's other marketing messages,
        # what it does when it loses, and whether it is transactional (never capped).
        Column("priority", Integer, nullable=False, server_default=text("50")),
        Column("on_conflict", Text, nullable=False, server_default=text("'drop'")),
        Column("transactional", Boolean, nullable=False, server_default=text("false")),
        # The end of the arbitration window the row is held in with its person's other messages.
        Column("held_until", DateTime(timezone=True)),
        Index("sends_due", "due_at", postgresql_where=_ACTIVE),
        Index("sends_profile_decided", "profile_id", "decided_at"),
        Index("sends_provider_message", "channel", "provider_message_id"),
        # Finished sends by age, for their retention (revision 0005).
        Index(
            "sends_finished_created_at",
            "created_at",
            postgresql_where=text("status NOT IN ('pending', 'sending')"),
        ),
    )


def senders_table(metadata: MetaData) -> Table:
    """One row per sender process: its owner id and when it last said it was alive."""
    return Table(
        "senders",
        metadata,
        Column("owner", Text, primary_key=True),
        Column("started_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        Column("heartbeat_at", DateTime(timezone=True), nullable=False),
    )


def preferences_table(metadata: MetaData) -> Table:
    """A profile's consent per channel and the channels it unsubscribed from."""
    return Table(
        "preferences",
        metadata,
        Column("profile_id", Text, primary_key=True),
        Column("consent", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("unsubscribed", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )


def policies_table(metadata: MetaData) -> Table:
    """The one policy document: frequency caps and quiet hours."""
    return Table(
        "policies",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("document", JSONB, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )


def access_tokens_table(metadata: MetaData) -> Table:
    """One row per provider credential (WeChat app, WeCom secret): the access token every
    replica uses, when it expires, and which replica holds the lease to refresh it."""
    return Table(
        "access_tokens",
        metadata,
        Column("credential", Text, primary_key=True),
        Column("access_token", Text),
        Column("expires_at", DateTime(timezone=True)),
        Column("refreshing_by", Text),
        Column("refreshing_until", DateTime(timezone=True)),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )


def topics_table(metadata: MetaData) -> Table:
    """The subscription topics messages may belong to, and the channels each is offered on."""
    return Table(
        "topics",
        metadata,
        Column("topic_id", Text, primary_key=True),
        Column("name", Text, nullable=False),
        Column("description", Text, nullable=False, server_default=text("''")),
        Column("channels", JSONB, nullable=False),
        Column("default_subscribed", Boolean, nullable=False, server_default=text("true")),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )


def all_tables(metadata: MetaData) -> list[Table]:
    return [
        channels_table(metadata),
        sends_table(metadata),
        senders_table(metadata),
        preferences_table(metadata),
        policies_table(metadata),
        access_tokens_table(metadata),
        topics_table(metadata),
    ]

"""The dispatch service's queries; nothing else touches its tables."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from libs.common.contact_policy import Preferences, SendPolicy, TopicRule, parse_policy
from libs.common.events.message import DEFAULT_PRIORITY
from libs.common.retention import Retained, batched_delete, older_than
from libs.common.store import SchemaStore
from services.dispatch.subscriptions import SubscriptionTopic

# Sends that count towards frequency caps: decided to go, whatever the provider said since.
_COUNTED = "('sending', 'sent', 'delivered')"
# Sends no longer pending or being sent, created longer ago than the ledger keeps them.
_FORGET_FINISHED_SENDS = batched_delete(
    "sends", "t.status NOT IN ('pending', 'sending') AND " + older_than("created_at")
)
_LEDGER_COLUMNS = (
    "message_id, idempotency_key, event_id, request_id, profile_id, channel, template_id, "
    "template_version, variant_id, CAST(journey AS text) AS journey, subject, body, "
    "CAST(payload AS text) AS payload, recipient, behavior_at, time_zone, status, attempts, "
    "provider_message_id, unsubscribed_at, attempt_started_at, traceparent, subscription_topic, "
    "CAST(consent AS text) AS consent, priority, on_conflict, transactional, created_at"
)


@dataclass(frozen=True)
class LedgerRow:
    """One send: the rendered message, its lineage and where it stands."""

    message_id: str
    idempotency_key: str
    event_id: str
    request_id: str
    profile_id: str
    channel: str
    template_id: str
    template_version: int
    variant_id: str | None
    journey: dict[str, Any]
    subject: str | None
    body: str | None
    payload: dict[str, Any]
    recipient: str | None
    behavior_at: datetime | None
    # The IANA zone the message's quiet hours are judged in, as the message named it.
    time_zone: str | None
    status: str
    attempts: int
    provider_message_id: str | None
    unsubscribed_at: datetime | None
    # Set on a row claimed from a dead sender whose provider call had started: uncertain.
    attempt_started_at: datetime | None = None
    # The W3C trace context of the message's trace, if it has one.
    traceparent: str | None = None
    # The subscription topic the message belongs to, if any.
    subscription_topic: str | None = None
    # What the profile's traits said about consent when the message was requested, if anything.
    consent: dict[str, Any] | None = None
    # The message's contact rule (message.rendered `contact`), and when it reached the ledger.
    priority: int = DEFAULT_PRIORITY
    on_conflict: str = "drop"
    transactional: bool = False
    created_at: datetime | None = None


@dataclass(frozen=True)
class ChannelRow:
    name: str
    kind: str
    config: dict[str, Any]
    secrets: dict[str, Any]
    rate_per_second: float | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SendUpdate:
    """What one provider call changed about a ledger row."""

    message_id: str
    status: str
    provider_message_id: str | None = None
    error: str | None = None
    sent_at: datetime | None = None
    due_at: datetime | None = None


@dataclass(frozen=True)
class Inserted:
    """Rendered messages new to the ledger, and how many of them are held for arbitration."""

    added: int
    held: int


@dataclass(frozen=True)
class StoredToken:
    """A credential's shared access token as the database has it, with the database's clock
    (`now`), so every replica judges expiry and leases by the same one."""

    access_token: str | None
    expires_at: datetime | None
    refreshing_by: str | None
    refreshing_until: datetime | None
    now: datetime

    def good_for(self, margin: timedelta) -> float:
        """Seconds the token may still be used before it is due a refresh (0: refresh now)."""
        if self.access_token is None or self.expires_at is None:
            return 0.0
        return max(0.0, (self.expires_at - margin - self.now).total_seconds())

    def still_valid(self) -> bool:
        """Whether the provider still takes the token, due a refresh or not."""
        return (
            self.access_token is not None
            and self.expires_at is not None
            and self.expires_at > self.now
        )


@dataclass(frozen=True)
class JournalRound:
    """What one round of the send journal changed: whether the sender was alive (else no
    attempt started), the attempts started and the results recorded."""

    alive: bool
    started: list[str]
    recorded: list[str]


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _ledger_row(row: Any) -> LedgerRow:
    return LedgerRow(
        message_id=row.message_id,
        idempotency_key=row.idempotency_key,
        event_id=row.event_id,
        request_id=row.request_id,
        profile_id=row.profile_id,
        channel=row.channel,
        template_id=row.template_id,
        template_version=row.template_version,
        variant_id=row.variant_id,
        journey=orjson.loads(row.journey),
        subject=row.subject,
        body=row.body,
        payload=orjson.loads(row.payload),
        recipient=row.recipient,
        behavior_at=row.behavior_at,
        time_zone=row.time_zone,
        status=row.status,
        attempts=row.attempts,
        provider_message_id=row.provider_message_id,
        unsubscribed_at=row.unsubscribed_at,
        attempt_started_at=row.attempt_started_at,
        traceparent=row.traceparent,
        subscription_topic=row.subscription_topic,
        consent=orjson.loads(row.consent) if row.consent is not None else None,
        priority=row.priority,
        on_conflict=row.on_conflict,
        transactional=row.transactional,
        created_at=row.created_at,
    )


_TOPIC_COLUMNS = (
    "topic_id, name, description, CAST(channels AS text) AS channels, default_subscribed, "
    "created_at, updated_at"
)


@dataclass(frozen=True)
class TopicRow:
    topic: SubscriptionTopic
    created_at: datetime
    updated_at: datetime


def _topic_row(row: Any) -> TopicRow:
    topic = SubscriptionTopic(
        row.topic_id,
        row.name,
        row.description,
        tuple(orjson.loads(row.channels)),
        row.default_subscribed,
    )
    return TopicRow(topic, row.created_at, row.updated_at)


def _topic_params(topic: SubscriptionTopic) -> dict[str, Any]:
    return {
        "id": topic.topic_id,
        "name": topic.name,
        "description": topic.description,
        "channels": _json(list(topic.channels)),
        "default": topic.default_subscribed,
    }


def _channel_row(row: Any) -> ChannelRow:
    return ChannelRow(
        row.name,
        row.kind,
        orjson.loads(row.config),
        orjson.loads(row.secrets),
        row.rate_per_second,
        row.created_at,
        row.updated_at,
    )


class DispatchStore(SchemaStore):
    """Dispatch's queries (SchemaStore: the caller's transaction, the service's schema)."""

    # The ledger

    async def forget_finished_sends(self, keep_days: float, limit: int) -> int:
        """Finished sends created more than `keep_days` ago, at most `limit` of them."""
        result = await self._execute(
            _FORGET_FINISHED_SENDS, {"seconds": keep_days * 86_400, "limit": limit}
        )
        return int(result.rowcount or 0)

    async def insert_sends(
        self, rows: Sequence[dict[str, Any]], hold: timedelta | None = None
    ) -> Inserted:
        """Add rendered messages; a key already in the ledger is skipped. How many were new,
        and how many of them are held.

        With an arbitration window (`hold`), a marketing message is held until the window of its
        person's first held message ends (or its own, when none is held): the person's
        messages asked for meanwhile come due together, and compete."""
        if not rows:
            return Inserted(0, 0)
        result = await self._execute(
            "WITH inserted AS (INSERT INTO {s}.sends (message_id, idempotency_key, event_id, "
            "request_id, profile_id, channel, template_id, template_version, variant_id, journey, "
            "subject, body, payload, recipient, behavior_at, time_zone, traceparent, "
            "subscription_topic, consent, priority, on_conflict, transactional, held_until, "
            "status, due_at) "
            "SELECT r.message_id, r.idempotency_key, r.event_id, r.request_id, r.profile_id, "
            "r.channel, r.template_id, r.template_version, r.variant_id, r.journey, r.subject, "
            "r.body, r.payload, r.recipient, r.behavior_at, r.time_zone, r.traceparent, "
            "r.subscription_topic, r.consent, coalesce(r.priority, 50), "
            "coalesce(r.on_conflict, 'drop'), coalesce(r.transactional, false), h.until, "
            "'pending', coalesce(h.until, now()) "
            "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(message_id text, "
            "idempotency_key text, event_id text, request_id text, profile_id text, "
            "channel text, template_id text, template_version int, variant_id text, "
            "journey jsonb, subject text, body text, payload jsonb, recipient text, "
            "behavior_at timestamptz, time_zone text, traceparent text, "
            "subscription_topic text, consent jsonb, priority int, on_conflict text, "
            "transactional boolean) "
            "CROSS JOIN LATERAL (SELECT CASE WHEN coalesce(r.transactional, false) "
            "OR CAST(:hold AS interval) IS NULL THEN NULL "
            "ELSE coalesce((SELECT min(held.held_until) FROM {s}.sends held "
            "WHERE held.profile_id = r.profile_id AND held.status = 'pending' "
            "AND held.held_until > now()), now() + CAST(:hold AS interval)) END AS until) h "
            "ON CONFLICT (idempotency_key) DO NOTHING RETURNING held_until) "
            "SELECT count(*) AS added, count(held_until) AS held FROM inserted",
            {"rows": _json(rows), "hold": hold},
        )
        row = result.one()
        return Inserted(int(row.added), int(row.held))

    async def release_holds(self, window: timedelta | None) -> int:
        """The policy's arbitration window changed: each person's held messages come due when
        the new window after the first of them ends (now, without a window), if sooner."""
        result = await self._execute(
            "UPDATE {s}.sends s SET due_at = g.until, held_until = g.until "
            "FROM (SELECT profile_id, least(min(held_until), "
            "coalesce(min(created_at) + CAST(:window AS interval), now())) AS until "
            "FROM {s}.sends WHERE status = 'pending' AND held_until > now() "
            "GROUP BY profile_id) g "
            "WHERE s.profile_id = g.profile_id AND s.status = 'pending' "
            "AND s.held_until > now() AND g.until < s.held_until",
            {"window": window},
        )
        return int(result.rowcount or 0)

    async def claim_due(self, limit: int, live_senders: Collection[str]) -> list[LedgerRow]:
        """Due rows, locked for this transaction; replicas skip each other's.

        A row `sending` is claimed only when the sender that claimed it is dead: not among
        `live_senders` (see `live_senders()`), or, for a row the release before the send
        journal left (no owner), past its lease.

        Read through `sends_due` in `due_at` order (an index scan, never a bitmap scan): the
        index keeps an entry for each row version that was once due until vacuum removes it,
        tens of thousands a minute at full rate. An index scan marks the entries of dead rows
        as it passes them, so the next claim skips them without reading their rows; a bitmap
        scan reads every one of them again, each claim. PostgreSQL picks the bitmap scan when
        it believes few rows are due, which it always does here.
        """
        await self._execute("SET LOCAL enable_bitmapscan = off")
        result = await self._execute(
            f"SELECT {_LEDGER_COLUMNS} FROM {{s}}.sends "
            "WHERE status IN ('pending', 'sending') AND due_at <= now() "
            "AND (status = 'pending' OR owner <> ALL(CAST(:live AS text[])) "
            "OR (owner IS NULL AND lease_until < now())) "
            "ORDER BY due_at LIMIT :limit FOR UPDATE SKIP LOCKED",
            {"limit": limit, "live": sorted(live_senders)},
        )
        claimed = [_ledger_row(row) for row in result]
        await self._execute("SET LOCAL enable_bitmapscan = on")
        return claimed

    async def lock_free_profiles(self, profile_ids: Collection[str]) -> set[str]:
        """Profiles this transaction now holds (for caps); those another sender holds are left."""
        if not profile_ids:
            return set()
        result = await self._execute(
            "SELECT p FROM unnest(CAST(:ids AS text[])) AS p "
            "WHERE pg_try_advisory_xact_lock(hashtextextended('dispatch:' || p, 0))",
            {"ids": sorted(profile_ids)},
        )
        return {row.p for row in result}

    async def contenders(
        self, profile_ids: Collection[str], claimed: Collection[str]
    ) -> tuple[list[LedgerRow], set[str]]:
        """The locked profiles' other due messages, locked for this transaction, and the
        profiles with a due message another sender's claim holds: those wait for the next
        claim, so that every message due for a person is arbitrated at once."""
        if not profile_ids:
            return [], set()
        params = {"ids": sorted(profile_ids), "claimed": sorted(claimed)}
        result = await self._execute(
            f"SELECT {_LEDGER_COLUMNS} FROM {{s}}.sends "
            "WHERE profile_id = ANY(CAST(:ids AS text[])) AND status = 'pending' "
            "AND due_at <= now() AND message_id <> ALL(CAST(:claimed AS text[])) "
            "FOR UPDATE SKIP LOCKED",
            params,
        )
        rows = [_ledger_row(row) for row in result]
        held = {row.message_id for row in rows} | set(claimed)
        due = await self._execute(
            "SELECT profile_id, message_id FROM {s}.sends "
            "WHERE profile_id = ANY(CAST(:ids AS text[])) AND status = 'pending' "
            "AND due_at <= now()",
            params,
        )
        busy = {row.profile_id for row in due if row.message_id not in held}
        return rows, busy

    async def sent_history(
        self, profile_ids: Collection[str], since: datetime
    ) -> dict[str, list[tuple[str, datetime]]]:
        history: dict[str, list[tuple[str, datetime]]] = {}
        if not profile_ids:
            return history
        result = await self._execute(
            "SELECT profile_id, channel, decided_at FROM {s}.sends "
            f"WHERE profile_id = ANY(CAST(:ids AS text[])) AND status IN {_COUNTED} "
            "AND decided_at > :since AND NOT transactional",
            {"ids": list(profile_ids), "since": since},
        )
        for row in result:
            history.setdefault(row.profile_id, []).append((row.channel, row.decided_at))
        return history

    async def mark_sending(self, message_ids: Sequence[str], owner: str) -> None:
        """Committed before any provider call: the rows are `owner`'s while it lives."""
        if message_ids:
            await self._execute(
                "UPDATE {s}.sends SET status = 'sending', owner = :owner, lease_until = NULL, "
                "decided_at = coalesce(decided_at, now()) "
                "WHERE message_id = ANY(CAST(:ids AS text[]))",
                {"ids": list(message_ids), "owner": owner},
            )

    async def give_up(self, reasons: dict[str, str]) -> None:
        """Fail uncertain sends the channel's policy does not resend."""
        if reasons:
            await self._execute(
                "UPDATE {s}.sends s SET status = 'failed', error = r.reason, owner = NULL, "
                "attempt_started_at = NULL, lease_until = NULL "
                "FROM jsonb_each_text(CAST(:reasons AS jsonb)) AS r(id, reason) "
                "WHERE s.message_id = r.id",
                {"reasons": _json(reasons)},
            )

    async def mark_suppressed(self, reasons: dict[str, str]) -> None:
        if reasons:
            await self._execute(
                "UPDATE {s}.sends s SET status = 'suppressed', error = r.reason, "
                "lease_until = NULL FROM jsonb_each_text(CAST(:reasons AS jsonb)) AS r(id, reason) "
                "WHERE s.message_id = r.id",
                {"reasons": _json(reasons)},
            )

    async def defer(self, until: dict[str, datetime]) -> None:
        if until:
            await self._execute(
                "UPDATE {s}.sends s SET due_at = CAST(r.until AS timestamptz) "
                "FROM jsonb_each_text(CAST(:until AS jsonb)) AS r(id, until) "
                "WHERE s.message_id = r.id",
                {"until": _json({key: value.isoformat() for key, value in until.items()})},
            )

    async def journal_round(
        self,
        attempts: Sequence[str],
        results: Sequence[SendUpdate],
        owner: str,
        takeover: timedelta,
    ) -> JournalRound:
        """One statement for a round of the send journal: the attempts about to start are
        marked on the rows still `owner`'s, if its heartbeat is fresh enough that no other
        sender can be taking them over; the results are stored on the rows still `sending` and
        `owner`'s (another sender may have taken a row over)."""
        rows = [
            {
                "message_id": u.message_id,
                "status": u.status,
                "provider_message_id": u.provider_message_id,
                "error": u.error,
                "sent_at": u.sent_at.isoformat() if u.sent_at else None,
                "due_at": u.due_at.isoformat() if u.due_at else None,
            }
            for u in results
        ]
        result = await self._execute(
            "WITH me AS (SELECT EXISTS (SELECT 1 FROM {s}.senders WHERE owner = :owner "
            "AND heartbeat_at > now() - CAST(:takeover AS interval)) AS alive), "
            "started AS (UPDATE {s}.sends s SET attempt_started_at = now(), "
            "attempts = s.attempts + 1 FROM me "
            "WHERE me.alive AND s.message_id = ANY(CAST(:ids AS text[])) "
            "AND s.status = 'sending' AND s.owner = :owner RETURNING s.message_id), "
            "recorded AS (UPDATE {s}.sends s SET status = r.status, "
            "provider_message_id = r.provider_message_id, error = r.error, "
            "sent_at = r.sent_at, due_at = coalesce(r.due_at, s.due_at), lease_until = NULL, "
            "owner = NULL, attempt_started_at = NULL, "
            # A retry is decided again (caps, quiet hours) when it comes due.
            "decided_at = CASE WHEN r.status = 'pending' THEN NULL ELSE s.decided_at END "
            "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(message_id text, status text, "
            "provider_message_id text, error text, sent_at timestamptz, due_at timestamptz) "
            "WHERE s.message_id = r.message_id AND s.status = 'sending' AND s.owner = :owner "
            "RETURNING s.message_id) "
            "SELECT (SELECT alive FROM me) AS alive, "
            "ARRAY(SELECT message_id FROM started) AS started, "
            "ARRAY(SELECT message_id FROM recorded) AS recorded",
            {
                "ids": list(attempts),
                "rows": _json(rows),
                "owner": owner,
                "takeover": takeover,
            },
        )
        row = result.one()
        return JournalRound(bool(row.alive), list(row.started), list(row.recorded))

    async def send_by_key(self, idempotency_key: str) -> LedgerRow | None:
        result = await self._execute(
            f"SELECT {_LEDGER_COLUMNS} FROM {{s}}.sends WHERE idempotency_key = :key",
            {"key": idempotency_key},
        )
        row = result.first()
        return None if row is None else _ledger_row(row)

    async def send_by_provider_id(self, channel: str, provider_id: str) -> LedgerRow | None:
        result = await self._execute(
            f"SELECT {_LEDGER_COLUMNS} FROM {{s}}.sends "
            "WHERE channel = :channel AND provider_message_id = :provider_id LIMIT 1",
            {"channel": channel, "provider_id": provider_id},
        )
        row = result.first()
        return None if row is None else _ledger_row(row)

    async def mark_unsubscribed(self, message_id: str) -> bool:
        """True the first time a message's unsubscribe link is used."""
        result = await self._execute(
            "UPDATE {s}.sends SET unsubscribed_at = now() "
            "WHERE message_id = :id AND unsubscribed_at IS NULL RETURNING message_id",
            {"id": message_id},
        )
        return result.first() is not None

    async def mark_receipt(self, message_id: str, status: str, error: str | None) -> bool:
        """Move a sent message to `delivered` or `failed`; False if it was there already."""
        result = await self._execute(
            "UPDATE {s}.sends SET status = :status, error = coalesce(:error, error) "
            "WHERE message_id = :id AND status = 'sent' RETURNING message_id",
            {"id": message_id, "status": status, "error": error},
        )
        return result.first() is not None

    async def backlog(self) -> int:
        result = await self._execute(
            "SELECT count(*) FROM {s}.sends WHERE status IN ('pending', 'sending')"
        )
        return int(result.scalar_one())

    # Sender heartbeats

    async def beat(self, owner: str) -> None:
        """`owner` is alive now."""
        await self._execute(
            "INSERT INTO {s}.senders (owner, heartbeat_at) VALUES (:owner, now()) "
            "ON CONFLICT (owner) DO UPDATE SET heartbeat_at = now()",
            {"owner": owner},
        )

    async def live_senders(self, takeover: timedelta) -> list[str]:
        """Senders heard from within `takeover`: the rows they claimed stay theirs."""
        result = await self._execute(
            "SELECT owner FROM {s}.senders "
            "WHERE heartbeat_at > now() - CAST(:takeover AS interval)",
            {"takeover": takeover},
        )
        return [row.owner for row in result]

    async def forget_senders(self, silent_for: timedelta) -> None:
        """Drop senders silent this long; a row they still own is claimable all the same."""
        await self._execute(
            "DELETE FROM {s}.senders WHERE heartbeat_at < now() - CAST(:silent AS interval)",
            {"silent": silent_for},
        )

    async def leave(self, owner: str) -> None:
        """A sender stopping: the rows it claimed and never attempted are free at once."""
        await self._execute("DELETE FROM {s}.senders WHERE owner = :owner", {"owner": owner})

    async def messages_of(self, profile_id: str, limit: int) -> list[dict[str, Any]]:
        """The person's messages in the ledger, newest first, at most `limit`."""
        result = await self._execute(
            "SELECT message_id, channel, template_id, template_version, variant_id, "
            "CAST(journey AS text) AS journey, subject, status, error, created_at, sent_at, "
            "unsubscribed_at FROM {s}.sends WHERE profile_id = :profile_id "
            "ORDER BY created_at DESC, message_id LIMIT :limit",
            {"profile_id": profile_id, "limit": limit},
        )
        return [{**row._asdict(), "journey": orjson.loads(row.journey)} for row in result]

    # Preferences and policies

    async def preferences(self, profile_ids: Collection[str]) -> dict[str, Preferences]:
        if not profile_ids:
            return {}
        result = await self._execute(
            "SELECT profile_id, CAST(consent AS text) AS consent, "
            "CAST(unsubscribed AS text) AS unsubscribed, CAST(topics AS text) AS topics "
            "FROM {s}.preferences WHERE profile_id = ANY(CAST(:ids AS text[]))",
            {"ids": list(profile_ids)},
        )
        return {
            row.profile_id: Preferences(
                orjson.loads(row.consent),
                frozenset(orjson.loads(row.unsubscribed)),
                orjson.loads(row.topics),
            )
            for row in result
        }

    async def preferences_after(
        self, cursor: str | None, limit: int
    ) -> list[tuple[str, Preferences]]:
        """Every stored answer after `cursor`, in profile id order, `limit` at most."""
        result = await self._execute(
            "SELECT profile_id, CAST(consent AS text) AS consent, "
            "CAST(unsubscribed AS text) AS unsubscribed, CAST(topics AS text) AS topics "
            "FROM {s}.preferences WHERE CAST(:cursor AS text) IS NULL OR profile_id > :cursor "
            "ORDER BY profile_id LIMIT :limit",
            {"cursor": cursor, "limit": limit},
        )
        return [
            (
                row.profile_id,
                Preferences(
                    orjson.loads(row.consent),
                    frozenset(orjson.loads(row.unsubscribed)),
                    orjson.loads(row.topics),
                ),
            )
            for row in result
        ]

    async def save_preferences(self, profile_id: str, preferences: Preferences) -> None:
        await self._execute(
            "INSERT INTO {s}.preferences (profile_id, consent, unsubscribed, topics, updated_at) "
            "VALUES (:id, CAST(:consent AS jsonb), CAST(:unsubscribed AS jsonb), "
            "CAST(:topics AS jsonb), now()) "
            "ON CONFLICT (profile_id) DO UPDATE SET consent = excluded.consent, "
            "unsubscribed = excluded.unsubscribed, topics = excluded.topics, updated_at = now()",
            {
                "id": profile_id,
                "consent": _json(dict(preferences.consent)),
                "unsubscribed": _json(sorted(preferences.unsubscribed)),
                "topics": _json({t: dict(answers) for t, answers in preferences.topics.items()}),
            },
        )

    async def save_topic_answers(
        self, profile_id: str, answers: Mapping[str, Mapping[str, bool]]
    ) -> None:
        """Set the profile's answers for these topics and channels, keeping its others, in one
        statement (a one-click unsubscribe and a preference page may answer at once)."""
        await self._execute(
            "INSERT INTO {s}.preferences (profile_id, topics) "
            "VALUES (:id, CAST(:answers AS jsonb)) "
            "ON CONFLICT (profile_id) DO UPDATE SET updated_at = now(), "
            "topics = {s}.preferences.topics || coalesce((SELECT jsonb_object_agg(a.key, "
            "coalesce({s}.preferences.topics -> a.key, '{}'::jsonb) || a.value) "
            "FROM jsonb_each(CAST(:answers AS jsonb)) AS a), '{}'::jsonb)",
            {"id": profile_id, "answers": _json({t: dict(a) for t, a in answers.items()})},
        )

    async def add_unsubscribe(self, profile_id: str, channel: str) -> None:
        await self._execute(
            "INSERT INTO {s}.preferences (profile_id, unsubscribed) "
            "VALUES (:id, jsonb_build_array(CAST(:channel AS text))) "
            "ON CONFLICT (profile_id) DO UPDATE SET updated_at = now(), unsubscribed = "
            "CASE WHEN {s}.preferences.unsubscribed ? :channel "
            "THEN {s}.preferences.unsubscribed "
            "ELSE {s}.preferences.unsubscribed || jsonb_build_array(CAST(:channel AS text)) END",
            {"id": profile_id, "channel": channel},
        )

    async def policy_document(self) -> dict[str, Any]:
        result = await self._execute(
            "SELECT CAST(document AS text) AS document FROM {s}.policies WHERE id = 1"
        )
        row = result.first()
        return {} if row is None else dict(orjson.loads(row.document))

    async def policy(self) -> SendPolicy:
        return parse_policy(await self.policy_document())

    async def save_policy(self, document: dict[str, Any]) -> None:
        await self._execute(
            "INSERT INTO {s}.policies (id, document, updated_at) "
            "VALUES (1, CAST(:document AS jsonb), now()) ON CONFLICT (id) "
            "DO UPDATE SET document = excluded.document, updated_at = now()",
            {"document": _json(document)},
        )

    # Subscription topics

    async def topics(self) -> list[TopicRow]:
        result = await self._execute(f"SELECT {_TOPIC_COLUMNS} FROM {{s}}.topics ORDER BY topic_id")
        return [_topic_row(row) for row in result]

    async def topic(self, topic_id: str) -> TopicRow | None:
        result = await self._execute(
            f"SELECT {_TOPIC_COLUMNS} FROM {{s}}.topics WHERE topic_id = :id", {"id": topic_id}
        )
        row = result.first()
        return None if row is None else _topic_row(row)

    async def topic_rules(self) -> dict[str, TopicRule]:
        """Whether each topic is opt-in, for the sender's decisions."""
        result = await self._execute("SELECT topic_id, default_subscribed FROM {s}.topics")
        return {row.topic_id: TopicRule(row.topic_id, row.default_subscribed) for row in result}

    async def insert_topic(self, topic: SubscriptionTopic) -> bool:
        """False when the id is taken."""
        result = await self._execute(
            "INSERT INTO {s}.topics (topic_id, name, description, channels, default_subscribed) "
            "VALUES (:id, :name, :description, CAST(:channels AS jsonb), :default) "
            "ON CONFLICT (topic_id) DO NOTHING RETURNING topic_id",
            _topic_params(topic),
        )
        return result.first() is not None

    async def update_topic(self, topic: SubscriptionTopic) -> bool:
        """False when there is no such topic."""
        result = await self._execute(
            "UPDATE {s}.topics SET name = :name, description = :description, "
            "channels = CAST(:channels AS jsonb), default_subscribed = :default, "
            "updated_at = now() WHERE topic_id = :id RETURNING topic_id",
            _topic_params(topic),
        )
        return result.first() is not None

    async def delete_topic(self, topic_id: str) -> bool:
        result = await self._execute(
            "DELETE FROM {s}.topics WHERE topic_id = :id RETURNING topic_id", {"id": topic_id}
        )
        return result.first() is not None

    # Merges and erasure

    async def move_profiles(self, survivor: str, merged: Sequence[str]) -> None:
        """The merged profiles' ledger rows become the survivor's (for its caps, and its
        erasure); each keeps the time zone its message named."""
        await self._execute(
            "UPDATE {s}.sends SET profile_id = :survivor "
            "WHERE profile_id = ANY(CAST(:merged AS text[]))",
            {"survivor": survivor, "merged": list(merged)},
        )

    async def delete_preferences(self, profile_ids: Sequence[str]) -> None:
        await self._execute(
            "DELETE FROM {s}.preferences WHERE profile_id = ANY(CAST(:ids AS text[]))",
            {"ids": list(profile_ids)},
        )

    async def erase_profile(self, profile_id: str) -> list[LedgerRow]:
        """Forget the person: preferences, and the ledger's content, address and time zone.

        Rows not sent yet are cancelled and returned, so their journeys hear they failed.
        """
        params = {"id": profile_id}
        await self._execute("DELETE FROM {s}.preferences WHERE profile_id = :id", params)
        cancelled = await self._execute(
            f"UPDATE {{s}}.sends SET status = 'failed', error = 'profile erased before sending', "
            f"lease_until = NULL WHERE profile_id = :id AND status = 'pending' "
            f"RETURNING {_LEDGER_COLUMNS}",
            params,
        )
        rows = [_ledger_row(row) for row in cancelled]
        await self._execute(
            "UPDATE {s}.sends SET recipient = NULL, subject = NULL, body = NULL, "
            "payload = '{}'::jsonb, time_zone = NULL, consent = NULL WHERE profile_id = :id",
            params,
        )
        return rows

    # Channels

    async def channels(self) -> list[ChannelRow]:
        result = await self._execute(
            "SELECT name, kind, CAST(config AS text) AS config, "
            "CAST(secrets AS text) AS secrets, rate_per_second, created_at, updated_at "
            "FROM {s}.channels ORDER BY name"
        )
        return [_channel_row(row) for row in result]

    async def channel(self, name: str) -> ChannelRow | None:
        result = await self._execute(
            "SELECT name, kind, CAST(config AS text) AS config, "
            "CAST(secrets AS text) AS secrets, rate_per_second, created_at, updated_at "
            "FROM {s}.channels WHERE name = :name",
            {"name": name},
        )
        row = result.first()
        return None if row is None else _channel_row(row)

    async def insert_channel(
        self,
        name: str,
        kind: str,
        config: dict[str, Any],
        secrets: dict[str, Any],
        rate: float | None,
    ) -> ChannelRow | None:
        result = await self._execute(
            "INSERT INTO {s}.channels (name, kind, config, secrets, rate_per_second) "
            "VALUES (:name, :kind, CAST(:config AS jsonb), CAST(:secrets AS jsonb), :rate) "
            "ON CONFLICT (name) DO NOTHING RETURNING name",
            {
                "name": name,
                "kind": kind,
                "config": _json(config),
                "secrets": _json(secrets),
                "rate": rate,
            },
        )
        return None if result.first() is None else await self.channel(name)

    async def update_channel(
        self,
        name: str,
        kind: str,
        config: dict[str, Any],
        secrets: dict[str, Any],
        rate: float | None,
    ) -> ChannelRow | None:
        result = await self._execute(
            "UPDATE {s}.channels SET kind = :kind, config = CAST(:config AS jsonb), "
            "secrets = CAST(:secrets AS jsonb), rate_per_second = :rate, updated_at = now() "
            "WHERE name = :name RETURNING name",
            {
                "name": name,
                "kind": kind,
                "config": _json(config),
                "secrets": _json(secrets),
                "rate": rate,
            },
        )
        return None if result.first() is None else await self.channel(name)

    async def delete_channel(self, name: str) -> bool:
        result = await self._execute(
            "DELETE FROM {s}.channels WHERE name = :name RETURNING name", {"name": name}
        )
        return result.first() is not None

    # Shared access tokens

    async def access_token(self, credential: str) -> StoredToken | None:
        result = await self._execute(
            "SELECT access_token, expires_at, refreshing_by, refreshing_until, now() AS now "
            "FROM {s}.access_tokens WHERE credential = :credential",
            {"credential": credential},
        )
        row = result.first()
        if row is None:
            return None
        return StoredToken(
            row.access_token, row.expires_at, row.refreshing_by, row.refreshing_until, row.now
        )

    async def take_token_lease(
        self, credential: str, owner: str, lease: timedelta, margin: timedelta
    ) -> bool:
        """Whether `owner` now holds the lease to refresh the credential's token: only when
        the token is missing or due (within `margin` of its expiry) and no live lease is held,
        so a replica that read the row before another refreshed it does not refresh again."""
        result = await self._execute(
            "INSERT INTO {s}.access_tokens AS t (credential, refreshing_by, refreshing_until) "
            "VALUES (:credential, :owner, now() + CAST(:lease AS interval)) "
            "ON CONFLICT (credential) DO UPDATE SET refreshing_by = :owner, "
            "refreshing_until = now() + CAST(:lease AS interval), updated_at = now() "
            "WHERE (t.refreshing_until IS NULL OR t.refreshing_until < now()) "
            "AND (t.access_token IS NULL OR t.expires_at IS NULL "
            "OR t.expires_at < now() + CAST(:margin AS interval)) "
            "RETURNING t.credential",
            {"credential": credential, "owner": owner, "lease": lease, "margin": margin},
        )
        return result.first() is not None

    async def save_token(
        self, credential: str, owner: str, access_token: str, lifetime: timedelta
    ) -> None:
        """The token `owner` fetched under its lease, for every replica; the lease ends."""
        await self._execute(
            "UPDATE {s}.access_tokens SET access_token = :token, "
            "expires_at = now() + CAST(:lifetime AS interval), refreshing_by = NULL, "
            "refreshing_until = NULL, updated_at = now() "
            "WHERE credential = :credential AND refreshing_by = :owner",
            {"credential": credential, "owner": owner, "token": access_token, "lifetime": lifetime},
        )

    async def release_token_lease(self, credential: str, owner: str) -> None:
        """The refresh failed: another replica may try at once."""
        await self._execute(
            "UPDATE {s}.access_tokens SET refreshing_by = NULL, refreshing_until = NULL "
            "WHERE credential = :credential AND refreshing_by = :owner",
            {"credential": credential, "owner": owner},
        )

    async def invalidate_token(self, credential: str, access_token: str) -> None:
        """The provider refused this token: forget it, unless a replica has replaced it."""
        await self._execute(
            "UPDATE {s}.access_tokens SET access_token = NULL, expires_at = NULL, "
            "updated_at = now() WHERE credential = :credential AND access_token = :token",
            {"credential": credential, "token": access_token},
        )


def finished_sends_retained(schema: str, keep_days: float) -> Retained:
    """Finished sends kept `keep_days` after they were created."""
    return Retained(
        "finished sends",
        lambda session, limit: DispatchStore(session, schema).forget_finished_sends(
            keep_days, limit
        ),
    )

"""The dispatch service's queries; nothing else touches its tables."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from libs.common.events.message import DEFAULT_PRIORITY
from libs.common.retention import Retained, batched_delete, older_than
from libs.common.store import SchemaStore
from services.dispatch.policy import Preferences, SendPolicy, parse_policy

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
    "provider_message_id, unsubscribed_at, attempt_started_at, traceparent, priority, "
    "on_conflict, transactional, created_at"
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
        priority=row.priority,
        on_conflict=row.on_conflict,
        transactional=row.transactional,
        created_at=row.created_at,
    )


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
            "subject, body, payload, recipient, behavior_at, time_zone, traceparent, priority, "
            "on_conflict, transactional, held_until, status, due_at) "
            "SELECT r.message_id, r.idempotency_key, r.event_id, r.request_id, r.profile_id, "
            "r.channel, r.template_id, r.template_version, r.variant_id, r.journey, r.subject, "
            "r.body, r.payload, r.recipient, r.behavior_at, r.time_zone, r.traceparent, "
            "coalesce(r.priority, 50), coalesce(r.on_conflict, 'drop'), "
            "coalesce(r.transactional, false), h.until, 'pending', "
            "coalesce(h.until, now()) "
            "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(message_id text, "
            "idempotency_key text, event_id text, request_id text, profile_id text, "
            "channel text, template_id text, template_version int, variant_id text, "
            "journey jsonb, subject text, body text, payload jsonb, recipient text, "
            "behavior_at timestamptz, time_zone text, traceparent text, priority int, "
            "on_conflict text, transactional boolean) "
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

    # Preferences and policies

    async def preferences(self, profile_ids: Collection[str]) -> dict[str, Preferences]:
        if not profile_ids:
            return {}
        result = await self._execute(
            "SELECT profile_id, CAST(consent AS text) AS consent, "
            "CAST(unsubscribed AS text) AS unsubscribed FROM {s}.preferences "
            "WHERE profile_id = ANY(CAST(:ids AS text[]))",
            {"ids": list(profile_ids)},
        )
        return {
            row.profile_id: Preferences(
                orjson.loads(row.consent), frozenset(orjson.loads(row.unsubscribed))
            )
            for row in result
        }

    async def save_preferences(self, profile_id: str, preferences: Preferences) -> None:
        await self._execute(
            "INSERT INTO {s}.preferences (profile_id, consent, unsubscribed, updated_at) "
            "VALUES (:id, CAST(:consent AS jsonb), CAST(:unsubscribed AS jsonb), now()) "
            "ON CONFLICT (profile_id) DO UPDATE SET consent = excluded.consent, "
            "unsubscribed = excluded.unsubscribed, updated_at = now()",
            {
                "id": profile_id,
                "consent": _json(dict(preferences.consent)),
                "unsubscribed": _json(sorted(preferences.unsubscribed)),
            },
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
            "payload = '{}'::jsonb, time_zone = NULL WHERE profile_id = :id",
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


def finished_sends_retained(schema: str, keep_days: float) -> Retained:
    """Finished sends kept `keep_days` after they were created."""
    return Retained(
        "finished sends",
        lambda session, limit: DispatchStore(session, schema).forget_finished_sends(
            keep_days, limit
        ),
    )

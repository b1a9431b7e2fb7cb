"""The sender: claims due ledger rows, decides, marks them `sending`, calls providers, records.

Per batch: one transaction claims due rows (`FOR UPDATE SKIP LOCKED`, so replicas share them),
applies consent, unsubscribes, quiet hours and caps, and commits the survivors as `sending`
before any provider is called. The calls run concurrently; a second transaction records every
result and writes the outcome events to the outbox. A crash between the two leaves rows
`sending`; when their lease runs out they are sent again with the same idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.common import metrics as common_metrics
from libs.common import topics
from libs.common.bus import EventProducer, OutboxRelay, write_outbox
from libs.common.bus.dlq import DeadLetter, send_to_dlq
from libs.common.db import create_sessions, session_transaction
from libs.common.events import (
    Event,
    JourneyRef,
    MessageFailed,
    MessageRendered,
    MessageSent,
    MessageSuppressed,
)
from services.dispatch import metrics
from services.dispatch.addresses import WebhookResolver
from services.dispatch.channels import Channel, OutgoingMessage, SendResult, build_channel
from services.dispatch.outcomes import outcome
from services.dispatch.policy import Preferences, SendPolicy, decide, profile_zone
from services.dispatch.ratelimit import TokenBucket
from services.dispatch.retries import next_step
from services.dispatch.settings import DispatchSettings
from services.dispatch.store import ChannelRow, DispatchStore, LedgerRow, SendUpdate

_log = logging.getLogger(__name__)
_RETRY_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0)
_BACKLOG_REFRESH_SECONDS = 5.0
DEAD_LETTER_ERROR = "permanent_provider_error"


@dataclass
class _Plan:
    """What the claim transaction decided for a batch."""

    to_send: list[LedgerRow] = field(default_factory=list)
    suppressed: dict[str, str] = field(default_factory=dict)
    deferred: dict[str, datetime] = field(default_factory=dict)
    events: list[Event[Any]] = field(default_factory=list)


@dataclass(frozen=True)
class _LedgerRecord:
    """The rendered message of a ledger row, shaped as the Kafka record the DLQ expects.

    The sender has no Kafka record in hand, so partition and offset are -1.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


class Sender:
    """The sender loops of one process, its HTTP client, channel adapters and rate limits."""

    def __init__(
        self,
        engine: AsyncEngine,
        relay: OutboxRelay,
        producer: EventProducer,
        settings: DispatchSettings,
    ) -> None:
        self.name = f"sender:{settings.schema_name}"
        self._sessions = create_sessions(engine)
        self._relay = relay
        self._producer = producer
        self._settings = settings
        self._schema = settings.schema_name
        self._group = f"closeloop-{settings.service_name}"
        self._resolver = WebhookResolver(settings.dispatch_webhook_allowed_networks)
        self._wakeup = asyncio.Event()
        self._client: httpx.AsyncClient | None = None
        self._session: aiohttp.ClientSession | None = None
        self._adapters: dict[str, tuple[datetime, Channel]] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        concurrency = self._settings.dispatch_sender_concurrency
        self._client = httpx.AsyncClient(
            timeout=self._settings.dispatch_provider_timeout_seconds,
            limits=httpx.Limits(
                max_connections=concurrency * self._settings.dispatch_sender_loops,
                max_keepalive_connections=concurrency,
            ),
            follow_redirects=False,
        )
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=concurrency * self._settings.dispatch_sender_loops, limit_per_host=0
            ),
            timeout=aiohttp.ClientTimeout(total=self._settings.dispatch_provider_timeout_seconds),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        # A cancelled claim rolls back; a row already `sending` is resent after its lease.
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def is_alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def wake(self) -> None:
        """New rows are in the ledger: look now rather than at the next poll."""
        self._wakeup.set()

    async def _run(self) -> None:
        loops = [self._loop() for _ in range(self._settings.dispatch_sender_loops)]
        await asyncio.gather(*loops, self._watch_backlog())

    async def _loop(self) -> None:
        failures = 0
        while True:
            try:
                claimed = await self.send_due()
                failures = 0
            except Exception:
                delay = _RETRY_BACKOFF_SECONDS[min(failures, len(_RETRY_BACKOFF_SECONDS) - 1)]
                failures += 1
                _log.exception("sender failed; retrying", extra={"schema": self._schema})
                await asyncio.sleep(delay)
                continue
            if claimed < self._settings.dispatch_sender_batch:
                await self._idle()

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self._wakeup.wait(), self._settings.dispatch_sender_poll_interval_ms / 1000
            )
        self._wakeup.clear()

    async def _watch_backlog(self) -> None:
        while True:
            try:
                async with self._sessions() as session:
                    backlog = await DispatchStore(session, self._schema).backlog()
                metrics.LEDGER_BACKLOG.set(backlog)
            except Exception:
                _log.warning("could not measure the ledger backlog", exc_info=True)
            await asyncio.sleep(_BACKLOG_REFRESH_SECONDS)

    async def send_due(self) -> int:
        """Claim, decide, send and record one batch; how many rows were claimed."""
        async with session_transaction(self._sessions) as session:
            store = DispatchStore(session, self._schema)
            claimed = await store.claim_due(self._settings.dispatch_sender_batch)
            if not claimed:
                return 0
            plan = await self._plan(store, claimed, datetime.now(UTC))
            await store.mark_suppressed(plan.suppressed)
            await store.defer(plan.deferred)
            await store.mark_sending(
                [row.message_id for row in plan.to_send],
                timedelta(seconds=self._settings.dispatch_sending_lease_seconds),
            )
            await write_outbox(session, self._schema, plan.events)
            adapters = await self._adapters_for(store, {row.channel for row in plan.to_send})
        if plan.events:
            self._relay.notify()
        if plan.to_send:
            # A call must end before the row's lease does, or another sender could send it too.
            start_by = time.monotonic() + (
                self._settings.dispatch_sending_lease_seconds
                - self._settings.dispatch_provider_timeout_seconds
            )
            called = await self._call_providers(plan.to_send, adapters, start_by)
            await self._record([row for row, _ in called], [result for _, result in called])
        return len(claimed)

    async def _plan(self, store: DispatchStore, claimed: list[LedgerRow], now: datetime) -> _Plan:
        plan = _Plan()
        # A row already `sending` was decided before its sender died: it only needs resending.
        plan.to_send.extend(row for row in claimed if row.status == "sending")
        fresh = [row for row in claimed if row.status == "pending"]
        profiles = await store.lock_free_profiles({row.profile_id for row in fresh})
        # Rows of a profile another sender holds stay pending for the next claim.
        fresh = [row for row in fresh if row.profile_id in profiles]
        if not fresh:
            return plan
        policy = await store.policy()
        preferences = await store.preferences(profiles)
        history = (
            await store.sent_history(profiles, now - policy.longest_window) if policy.caps else {}
        )
        for row in fresh:
            self._decide(row, now, plan, policy, preferences, history)
        return plan

    def _decide(
        self,
        row: LedgerRow,
        now: datetime,
        plan: _Plan,
        policy: SendPolicy,
        preferences: dict[str, Preferences],
        history: dict[str, list[tuple[str, datetime]]],
    ) -> None:
        sent = history.setdefault(row.profile_id, [])
        decision = decide(
            row.channel,
            now,
            preferences=preferences.get(row.profile_id, Preferences()),
            policy=policy,
            sent=sent,
            # The zone the message named; only quiet hours read it.
            zone=profile_zone(row.time_zone if policy.quiet_hours else None),
            default_consent=self._settings.dispatch_default_consent,
        )
        if decision.action == "send":
            plan.to_send.append(row)
            sent.append((row.channel, now))  # later rows of this batch count this one
        elif decision.action == "defer" and decision.until is not None:
            plan.deferred[row.message_id] = decision.until
            metrics.SENDS.labels(row.channel, "deferred").inc()
        elif decision.reason is not None:
            plan.suppressed[row.message_id] = decision.reason
            plan.events.append(outcome(MessageSuppressed, row, now, reason=decision.reason))
            metrics.SENDS.labels(row.channel, "suppressed").inc()
            metrics.SUPPRESSIONS.labels(decision.reason).inc()

    async def _adapters_for(self, store: DispatchStore, names: set[str]) -> dict[str, Channel]:
        if not names:
            return {}
        rows = {row.name: row for row in await store.channels() if row.name in names}
        return {name: self._adapter(row) for name, row in rows.items()}

    def _adapter(self, row: ChannelRow) -> Channel:
        cached = self._adapters.get(row.name)
        if cached is not None and cached[0] == row.updated_at:
            return cached[1]
        assert self._client is not None and self._session is not None
        adapter = build_channel(
            row.kind,
            {**row.config, **row.secrets},
            client=self._client,
            session=self._session,
            resolver=self._resolver,
            timeout=self._settings.dispatch_provider_timeout_seconds,
        )
        self._adapters[row.name] = (row.updated_at, adapter)
        if row.rate_per_second:
            bucket = self._buckets.get(row.name)
            if bucket is None or bucket.rate != row.rate_per_second:
                self._buckets[row.name] = TokenBucket(row.rate_per_second)
        else:
            self._buckets.pop(row.name, None)
        return adapter

    async def _call_providers(
        self, rows: list[LedgerRow], adapters: dict[str, Channel], start_by: float
    ) -> list[tuple[LedgerRow, SendResult]]:
        """Call the providers; rows whose call could not start by `start_by` (monotonic) are
        left out: they stay `sending` and are sent again, with their key, after their lease.

        `dispatch_sender_concurrency` callers take the rows in turn: a task per caller rather
        than per row, so a batch of 500 does not make 500 tasks wait on a semaphore.
        """
        results: list[SendResult | None] = [None] * len(rows)
        next_rows = iter(enumerate(rows))

        async def caller() -> None:
            for index, row in next_rows:
                results[index] = await self._call_row(row, adapters, start_by)

        callers = min(self._settings.dispatch_sender_concurrency, len(rows))
        await asyncio.gather(*(caller() for _ in range(callers)))
        return [
            (row, result) for row, result in zip(rows, results, strict=True) if result is not None
        ]

    async def _call_row(
        self, row: LedgerRow, adapters: dict[str, Channel], start_by: float
    ) -> SendResult | None:
        adapter = adapters.get(row.channel)
        if adapter is None:
            return SendResult.permanent(f"no channel named {row.channel!r} is configured")
        bucket = self._buckets.get(row.channel)
        if bucket is not None:
            await bucket.acquire()
        if time.monotonic() > start_by:
            metrics.SENDS.labels(row.channel, "lease_expired").inc()
            return None
        return await self._call(adapter, row)

    async def _call(self, adapter: Channel, row: LedgerRow) -> SendResult:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._settings.dispatch_provider_timeout_seconds):
                result = await adapter.send(_outgoing(row))
        except TimeoutError:
            result = SendResult.transient("the provider did not answer in time")
        except Exception as error:
            # An adapter bug must not stop the batch; the row is retried like a provider error.
            _log.exception("channel adapter failed", extra={"channel": row.channel})
            result = SendResult.transient(f"adapter error: {type(error).__name__}: {error}")
        metrics.PROVIDER_LATENCY.labels(row.channel).observe(time.perf_counter() - started)
        return result

    async def _record(self, rows: list[LedgerRow], results: list[SendResult]) -> None:
        now = datetime.now(UTC)
        updates: list[SendUpdate] = []
        events: dict[str, Event[Any]] = {}
        letters: dict[str, DeadLetter] = {}
        for row, result in zip(rows, results, strict=True):
            self._outcome(row, result, now, updates, events, letters)
        async with session_transaction(self._sessions) as session:
            store = DispatchStore(session, self._schema)
            recorded = set(await store.record_results(updates))
            await write_outbox(
                session, self._schema, [e for key, e in events.items() if key in recorded]
            )
            chosen = [letter for key, letter in letters.items() if key in recorded]
            if chosen:
                # Before the commit: a crash in between resends, and dead-letters again.
                await send_to_dlq(self._producer, self._group, chosen)
        self._relay.notify()
        for row, result in zip(rows, results, strict=True):
            if row.message_id in recorded and result.outcome == "sent" and row.behavior_at:
                seconds = (now - row.behavior_at).total_seconds()
                common_metrics.LOOP_LATENCY.labels(row.channel).observe(seconds)

    def _outcome(
        self,
        row: LedgerRow,
        result: SendResult,
        now: datetime,
        updates: list[SendUpdate],
        events: dict[str, Event[Any]],
        letters: dict[str, DeadLetter],
    ) -> None:
        attempts = row.attempts + 1  # mark_sending counted this attempt
        settings = self._settings
        step = next_step(
            result,
            attempts,
            max_attempts=settings.dispatch_max_attempts,
            base_seconds=settings.dispatch_retry_base_seconds,
            max_seconds=settings.dispatch_retry_max_seconds,
        )
        key = row.message_id
        if step.status == "sent":
            updates.append(
                SendUpdate(key, "sent", provider_message_id=result.provider_message_id, sent_at=now)
            )
            events[key] = outcome(
                MessageSent, row, now, provider_message_id=result.provider_message_id
            )
            metrics.SENDS.labels(row.channel, "sent").inc()
            return
        error = result.error or "the provider refused the message"
        if step.status == "pending" and step.retry_in is not None:
            updates.append(SendUpdate(key, "pending", error=error, due_at=now + step.retry_in))
            events[key] = outcome(MessageFailed, row, now, error=error, retryable=True)
            metrics.SENDS.labels(row.channel, "retry").inc()
            return
        if not step.dead_letter:
            error = f"{error} (gave up after {attempts} attempts)"
        updates.append(SendUpdate(key, "failed", error=error))
        events[key] = outcome(MessageFailed, row, now, error=error[:2000], retryable=False)
        metrics.SENDS.labels(row.channel, "failed").inc()
        if step.dead_letter:
            letters[key] = DeadLetter(_dead_letter_record(row), DEAD_LETTER_ERROR, error)


def _outgoing(row: LedgerRow) -> OutgoingMessage:
    return OutgoingMessage(
        message_id=row.message_id,
        idempotency_key=row.idempotency_key,
        profile_id=row.profile_id,
        channel=row.channel,
        recipient=row.recipient,
        subject=row.subject,
        body=row.body,
        payload=row.payload,
        lineage={
            "request_id": row.request_id,
            "journey": row.journey,
            "template_id": row.template_id,
            "template_version": row.template_version,
            "variant_id": row.variant_id,
        },
        traceparent=row.traceparent,
    )


def _dead_letter_record(row: LedgerRow) -> _LedgerRecord:
    rendered = MessageRendered(
        request_id=row.request_id,
        profile_id=row.profile_id,
        channel=row.channel,
        template_id=row.template_id,
        template_version=row.template_version,
        variant_id=row.variant_id,
        subject=row.subject,
        body=row.body,
        payload=row.payload,
        recipient=row.recipient,
        idempotency_key=row.idempotency_key,
        journey=JourneyRef.model_validate(row.journey),
        behavior_at=row.behavior_at,
        time_zone=row.time_zone,
    )
    event = Event(data=rendered, key=row.profile_id, source="closeloop/dispatch", id=row.event_id)
    return _LedgerRecord(
        topics.DELIVERIES, -1, -1, event.key.encode(), event.value(), event.headers()
    )

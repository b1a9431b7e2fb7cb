"""The sender: claims due ledger rows, decides, calls providers, journals each send.

A claim transaction takes due rows (`FOR UPDATE SKIP LOCKED`, so replicas share them), applies
consent, unsubscribes, quiet hours and caps, and commits the survivors as `sending`, owned by
this process, before any provider is called. Call slots (`dispatch_max_in_flight`) take the
claimed rows one by one: each journals its attempt, calls, and journals the result (see
journal.py), and is free again only once the result is durable. So a crash leaves uncertain
(attempted, no result) at most the sends in flight at that instant.

Each process writes a heartbeat; the rows of a process silent for `dispatch_takeover_seconds`
are claimed by the others (or by the process restarted). A taken-over row never attempted is
sent; one attempted is uncertain, and its channel's policy (`dispatch_uncertain_sends`) resends
it (at least once; webhooks with the same Idempotency-Key) or gives it up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
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
from libs.common.bus.dlq import DeadLetter
from libs.common.contact_policy import (
    NO_TRAIT_ANSWERS,
    Contender,
    Preferences,
    SendPolicy,
    TopicRule,
    TraitAnswers,
    Verdict,
    arbitrate,
    profile_zone,
)
from libs.common.db import create_sessions, session_transaction
from libs.common.events import (
    ArbitrationWinner,
    CarriedConsent,
    Event,
    JourneyRef,
    MessageDeferred,
    MessageFailed,
    MessageRendered,
    MessageSent,
    MessageSuppressed,
)
from libs.common.tracking import TrackingToken, tracking_url
from services.dispatch import metrics
from services.dispatch.addresses import WebhookResolver
from services.dispatch.channels import Channel, OutgoingMessage, SendResult, build_channel
from services.dispatch.journal import Attempt, Outcome, SendJournal
from services.dispatch.outcomes import outcome
from services.dispatch.ratelimit import TokenBucket
from services.dispatch.retries import next_step
from services.dispatch.settings import DispatchSettings
from services.dispatch.store import ChannelRow, DispatchStore, LedgerRow, SendUpdate
from services.dispatch.tokens import AccessTokens

_log = logging.getLogger(__name__)
_RETRY_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0)
_BACKLOG_REFRESH_SECONDS = 5.0
# A sender silent this long is forgotten (its rows were claimable long before).
_FORGET_SENDERS_AFTER = timedelta(hours=1)
DEAD_LETTER_ERROR = "permanent_provider_error"
UNCERTAIN_GIVEN_UP = (
    "uncertain: the sender calling the provider stopped before it recorded the answer, and "
    "this channel's policy is give_up (the message may or may not have been sent)"
)


@dataclass(frozen=True)
class _Rules:
    """What a claim decides a batch's rows by, loaded once for the batch."""

    policy: SendPolicy
    preferences: dict[str, Preferences]
    history: dict[str, list[tuple[str, datetime]]]
    topics: dict[str, TopicRule]


@dataclass
class _Plan:
    """What the claim transaction decided for a batch."""

    to_send: list[LedgerRow] = field(default_factory=list)
    suppressed: dict[str, str] = field(default_factory=dict)
    given_up: dict[str, str] = field(default_factory=dict)
    deferred: dict[str, datetime] = field(default_factory=dict)
    events: list[Event[Any]] = field(default_factory=list)
    counts: list[tuple[Any, int]] = field(default_factory=list)

    def count(self, counter: Any, amount: int = 1) -> None:
        """A metric to add to once the claim commits: a claim rolled back and run again (a
        conflict, a deadlock) then counts its decisions once, not once per attempt."""
        self.counts.append((counter, amount))

    def publish_counts(self) -> None:
        for counter, amount in self.counts:
            counter.inc(amount)


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


# A claimed row and its channel's adapter, its attempt journalled: ready to call.
_Ready = tuple[LedgerRow, Channel]


def sender_owner() -> str:
    """This process's name in the ledger: unique per start, readable in a query."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Sender:
    """One process's sender: its heartbeat, claimer, call slots and journal writer, its HTTP
    clients, channel adapters and rate limits."""

    def __init__(
        self,
        engine: AsyncEngine,
        relay: OutboxRelay,
        producer: EventProducer,
        settings: DispatchSettings,
    ) -> None:
        self.name = f"sender:{settings.schema_name}"
        self.owner = sender_owner()
        self._sessions = create_sessions(engine)
        self._relay = relay
        self._settings = settings
        self._schema = settings.schema_name
        self._takeover = timedelta(seconds=settings.dispatch_takeover_seconds)
        self._journal = SendJournal(
            self._sessions,
            self._schema,
            self.owner,
            self._takeover,
            producer,
            f"closeloop-{settings.service_name}",
            relay,
        )
        self._resolver = WebhookResolver(settings.dispatch_webhook_allowed_networks)
        self._tokens = AccessTokens(self._sessions, self._schema, self.owner)
        self._wakeup = asyncio.Event()
        self._alive = asyncio.Event()
        self._claimed: asyncio.Queue[tuple[LedgerRow, Channel | None]] = asyncio.Queue(
            maxsize=settings.dispatch_sender_batch
        )
        self._calling = 0
        self._calls_done = asyncio.Event()
        self._stopping = False
        self._client: httpx.AsyncClient | None = None
        self._session: aiohttp.ClientSession | None = None
        self._adapters: dict[str, tuple[datetime, Channel]] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._claimer: asyncio.Task[None] | None = None
        self._slots: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        slots = self._settings.dispatch_max_in_flight
        self._client = httpx.AsyncClient(
            timeout=self._settings.dispatch_provider_timeout_seconds,
            limits=httpx.Limits(max_connections=slots, max_keepalive_connections=slots),
            follow_redirects=False,
        )
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=slots, limit_per_host=0),
            timeout=aiohttp.ClientTimeout(total=self._settings.dispatch_provider_timeout_seconds),
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )
        _log.info(
            "sender started: a crash of this process leaves at most %d sends uncertain "
            "(CLOSELOOP_DISPATCH_MAX_IN_FLIGHT); its rows are taken over %.0fs after its last "
            "heartbeat",
            slots,
            self._settings.dispatch_takeover_seconds,
            extra={"owner": self.owner, "max_in_flight": slots},
        )
        metrics.MAX_IN_FLIGHT.set(slots)
        self._claimer = asyncio.create_task(self._claim_loop(), name=f"{self.name}:claim")
        self._tasks = [
            asyncio.create_task(self._heartbeat(), name=f"{self.name}:heartbeat"),
            asyncio.create_task(self._journal.run(), name=f"{self.name}:journal"),
            asyncio.create_task(self._watch_backlog(), name=f"{self.name}:backlog"),
            self._claimer,
        ]
        self._slots = [
            asyncio.create_task(self._call_slot(), name=f"{self.name}:slot") for _ in range(slots)
        ]

    async def stop(self) -> None:
        """Claim no more, let the calls in flight end and their results commit, then leave the
        ledger: the rows claimed and not called are free for other senders at once."""
        self._stopping = True
        if self._claimer is not None:
            await _cancel([self._claimer])
        while not self._claimed.empty():
            self._claimed.get_nowait()
        if self._calling:
            self._calls_done.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._calls_done.wait(), self._settings.dispatch_provider_timeout_seconds + 5
                )
        await _cancel(self._slots)
        with contextlib.suppress(Exception):
            async with session_transaction(self._sessions) as session:
                await DispatchStore(session, self._schema).leave(self.owner)
        await _cancel(self._tasks)
        self._tasks, self._slots, self._claimer = [], [], None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def is_alive(self) -> bool:
        tasks = [*self._tasks, *self._slots]
        return bool(tasks) and not any(task.done() for task in tasks)

    def wake(self) -> None:
        """New rows are in the ledger: look now rather than at the next poll."""
        self._wakeup.set()

    async def _heartbeat(self) -> None:
        beats = 0
        while True:
            try:
                async with session_transaction(self._sessions) as session:
                    store = DispatchStore(session, self._schema)
                    await store.beat(self.owner)
                    if beats % 60 == 0:
                        await store.forget_senders(_FORGET_SENDERS_AFTER)
                beats += 1
                self._alive.set()
            except Exception:
                _log.warning("sender heartbeat failed", exc_info=True)
            await asyncio.sleep(self._settings.dispatch_heartbeat_seconds)

    async def _claim_loop(self) -> None:
        await self._alive.wait()
        failures = 0
        while True:
            try:
                claimed = await self.claim_due()
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

    async def claim_due(self) -> int:
        """Claim and decide one batch, and hand the rows to send to the call slots (waiting
        while they are a batch behind); how many rows were claimed."""
        async with session_transaction(self._sessions) as session:
            store = DispatchStore(session, self._schema)
            live = await store.live_senders(self._takeover)
            claimed = await store.claim_due(self._settings.dispatch_sender_batch, live)
            if not claimed:
                return 0
            plan = await self._plan(store, claimed, datetime.now(UTC))
            await store.mark_suppressed(plan.suppressed)
            await store.give_up(plan.given_up)
            await store.defer(plan.deferred)
            await store.mark_sending([row.message_id for row in plan.to_send], self.owner)
            await write_outbox(session, self._schema, plan.events)
            adapters = await self._adapters_for(store, {row.channel for row in plan.to_send})
        plan.publish_counts()
        if plan.events:
            self._relay.notify()
        for row in plan.to_send:
            await self._claimed.put((row, adapters.get(row.channel)))
        return len(claimed)

    async def _plan(self, store: DispatchStore, claimed: list[LedgerRow], now: datetime) -> _Plan:
        plan = _Plan()
        # A row already `sending` was decided before its sender died: it only needs sending.
        taken_over = [row for row in claimed if row.status == "sending"]
        if taken_over:
            await self._take_over(store, taken_over, now, plan)
        fresh = [row for row in claimed if row.status == "pending"]
        profiles = await store.lock_free_profiles({row.profile_id for row in fresh})
        contenders, busy = await store.contenders(profiles, [row.message_id for row in fresh])
        # Rows of a profile another sender holds stay pending for the next claim, and so do
        # those of a profile with a due row in another sender's claim: a person's due messages
        # are arbitrated together.
        profiles -= busy
        due = [row for row in [*fresh, *contenders] if row.profile_id in profiles]
        if not due:
            return plan
        policy = await store.policy()
        rules = _Rules(
            policy,
            await store.preferences(profiles),
            await store.sent_history(profiles, now - policy.longest_window) if policy.caps else {},
            await store.topic_rules() if any(row.subscription_topic for row in due) else {},
        )
        by_profile: dict[str, list[LedgerRow]] = {}
        for row in due:
            by_profile.setdefault(row.profile_id, []).append(row)
        for profile_id, rows in by_profile.items():
            self._arbitrate(profile_id, rows, now, plan, rules)
        return plan

    async def _take_over(
        self, store: DispatchStore, rows: list[LedgerRow], now: datetime, plan: _Plan
    ) -> None:
        """A dead sender's rows: never attempted, they are sent; attempted, their call may have
        reached the provider or not, and the channel kind's policy resends or gives up."""
        uncertain = [row for row in rows if row.attempt_started_at is not None]
        plan.to_send.extend(row for row in rows if row.attempt_started_at is None)
        plan.count(metrics.TAKEN_OVER, len(rows))
        if not uncertain:
            return
        kinds = {channel.name: channel.kind for channel in await store.channels()}
        policies = self._settings.dispatch_uncertain_sends
        for row in uncertain:
            policy = policies.get(kinds.get(row.channel, ""), "resend")
            plan.count(metrics.UNCERTAIN_SENDS.labels(row.channel, policy))
            if policy == "resend":
                plan.to_send.append(row)
                continue
            plan.given_up[row.message_id] = UNCERTAIN_GIVEN_UP
            plan.events.append(
                outcome(MessageFailed, row, now, error=UNCERTAIN_GIVEN_UP, retryable=False)
            )
            plan.count(metrics.SENDS.labels(row.channel, "failed"))

    def _arbitrate(
        self, profile_id: str, rows: list[LedgerRow], now: datetime, plan: _Plan, rules: _Rules
    ) -> None:
        """One person's due rows, decided together (libs/common/contact_policy.py)."""
        verdicts = arbitrate(
            [_contender(row, rules) for row in rows],
            now,
            preferences=rules.preferences.get(profile_id, Preferences()),
            policy=rules.policy,
            sent=rules.history.get(profile_id, []),
            default_consent=self._settings.dispatch_default_consent,
        )
        by_id = {row.message_id: row for row in rows}
        for message_id, verdict in verdicts.items():
            self._apply(by_id[message_id], verdict, by_id, now, plan)

    def _apply(
        self,
        row: LedgerRow,
        verdict: Verdict,
        rows: dict[str, LedgerRow],
        now: datetime,
        plan: _Plan,
    ) -> None:
        decision = verdict.decision
        winner = None if verdict.won_by is None else rows[verdict.won_by.message_id]
        if decision.action == "send":
            plan.to_send.append(row)
        elif decision.action == "defer" and decision.until is not None:
            plan.deferred[row.message_id] = decision.until
            deferred = outcome(
                MessageDeferred,
                row,
                now,
                reason=decision.reason,
                until=decision.until,
                won_by=None if winner is None else _winner(winner),
            )
            plan.events.append(deferred)
            plan.count(metrics.SENDS.labels(row.channel, "deferred"))
            if winner is not None:
                plan.count(metrics.ARBITRATIONS.labels("deferred"))
        elif decision.reason is not None:
            plan.suppressed[row.message_id] = decision.reason
            suppressed = outcome(
                MessageSuppressed,
                row,
                now,
                reason=decision.reason,
                subscription_topic=decision.topic,
                won_by=None if winner is None else _winner(winner),
            )
            plan.events.append(suppressed)
            plan.count(metrics.SENDS.labels(row.channel, "suppressed"))
            plan.count(metrics.SUPPRESSIONS.labels(decision.reason))
            if winner is not None:
                plan.count(metrics.ARBITRATIONS.labels("dropped"))

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
            tokens=self._tokens,
        )
        self._adapters[row.name] = (row.updated_at, adapter)
        if row.rate_per_second:
            bucket = self._buckets.get(row.name)
            if bucket is None or bucket.rate != row.rate_per_second:
                self._buckets[row.name] = TokenBucket(row.rate_per_second)
        else:
            self._buckets.pop(row.name, None)
        return adapter

    async def _call_slot(self) -> None:
        """One provider call in flight at a time: a row taken, its attempt journalled, called,
        and its result journalled together with the attempt of the slot's next row."""
        ready: _Ready | None = None
        while True:
            if ready is None:
                row, adapter = await self._claimed.get()
                self._calling += 1
                ready = await self._begin(row, adapter)
            if ready is not None:
                ready = await self._send(*ready)
            if ready is None:
                self._calling -= 1
                if not self._calling:
                    self._calls_done.set()

    async def _begin(self, row: LedgerRow, adapter: Channel | None) -> _Ready | None:
        """The row with its adapter once its attempt is journalled; None when it needs no call
        (no channel: failed at once) or is no longer this sender's."""
        try:
            if adapter is None:
                # Nothing to call: the result is certain, no attempt to journal.
                result = SendResult.permanent(f"no channel named {row.channel!r} is configured")
                await self._record(row, result, None)
                return None
            bucket = self._buckets.get(row.channel)
            if bucket is not None:
                await bucket.acquire()
            return (row, adapter) if await self._start_attempt(row) else None
        except Exception:
            # Only a bug gets here (the journal retries its writes): the row stays this
            # sender's, `sending`, and is taken over when the process restarts.
            _log.exception("send failed", extra={"message_id": row.message_id})
            return None

    async def _send(self, row: LedgerRow, adapter: Channel) -> _Ready | None:
        """Call, then record the result with the next row's attempt; that row, if started."""
        metrics.IN_FLIGHT.inc()
        try:
            result = await self._call(adapter, row)
            follower = self._follower()
            attempt = await self._record(row, result, follower)
        except Exception:
            _log.exception("send failed", extra={"message_id": row.message_id})
            return None
        finally:
            metrics.IN_FLIGHT.dec()
        if follower is None:
            return None
        next_row = follower[0]
        if attempt is Attempt.STARTED:
            return follower
        if attempt is Attempt.NOT_ALIVE and await self._start_attempt(next_row):
            return follower
        if attempt is Attempt.TAKEN_OVER:
            metrics.SENDS.labels(next_row.channel, "taken_over").inc()
        return None

    def _follower(self) -> _Ready | None:
        """A claimed row that can ride along with this result: one with a channel and no rate
        limit to wait for (those take the ordinary way, through `_begin`)."""
        if self._stopping or self._claimed.empty():
            return None
        row, adapter = self._claimed.get_nowait()
        if adapter is not None and row.channel not in self._buckets:
            return row, adapter
        self._claimed.put_nowait((row, adapter))
        return None

    async def _start_attempt(self, row: LedgerRow) -> bool:
        """Whether the row's attempt is journalled and its call may start. While this
        sender's heartbeat is stale, it waits for a fresh one: its rows may be taken over."""
        while not self._stopping:
            attempt = await self._journal.attempt(row.message_id)
            if attempt is Attempt.STARTED:
                return True
            if attempt is Attempt.TAKEN_OVER:
                metrics.SENDS.labels(row.channel, "taken_over").inc()
                return False
            await asyncio.sleep(self._settings.dispatch_heartbeat_seconds)
        return False

    async def _call(self, adapter: Channel, row: LedgerRow) -> SendResult:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._settings.dispatch_provider_timeout_seconds):
                result = await adapter.send(_outgoing(row, self._unsubscribe_url(row)))
        except TimeoutError:
            result = SendResult.transient("the provider did not answer in time")
        except Exception as error:
            # An adapter bug must not stop the sender; the row is retried like a provider error.
            _log.exception("channel adapter failed", extra={"channel": row.channel})
            result = SendResult.transient(f"adapter error: {type(error).__name__}: {error}")
        metrics.PROVIDER_LATENCY.labels(row.channel).observe(time.perf_counter() - started)
        return result

    def _unsubscribe_url(self, row: LedgerRow) -> str | None:
        """The one-click unsubscribe URL of a marketing message of a subscription topic (RFC
        8058); a transactional one carries none."""
        secret = self._settings.tracking_secret.get_secret_value()
        if row.subscription_topic is None or row.transactional or not secret:
            return None
        token = TrackingToken(row.idempotency_key, "unsubscribe")
        return tracking_url(self._settings.tracking_base_url, token, secret)

    async def _record(
        self, row: LedgerRow, result: SendResult, follower: _Ready | None
    ) -> Attempt | None:
        """Journal the result (with the follower's attempt); what became of that attempt."""
        now = datetime.now(UTC)
        journalled, counted_as = self._outcome(row, result, now)
        then = follower[0].message_id if follower is not None else None
        recorded, attempt = await self._journal.record(journalled, then)
        if not recorded:
            metrics.SENDS.labels(row.channel, "taken_over").inc()
            return attempt
        metrics.SENDS.labels(row.channel, counted_as).inc()
        if result.outcome == "sent" and row.behavior_at:
            seconds = (now - row.behavior_at).total_seconds()
            common_metrics.LOOP_LATENCY.labels(row.channel).observe(seconds)
        return attempt

    def _outcome(self, row: LedgerRow, result: SendResult, now: datetime) -> tuple[Outcome, str]:
        """What the result means for the row, and how `closeloop_dispatch_sends_total`
        counts it."""
        attempts = row.attempts + 1  # start_attempts counted this attempt
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
            update = SendUpdate(
                key, "sent", provider_message_id=result.provider_message_id, sent_at=now
            )
            sent = outcome(MessageSent, row, now, provider_message_id=result.provider_message_id)
            return Outcome(update, sent), "sent"
        error = result.error or "the provider refused the message"
        if step.status == "suppressed":
            # The provider says the person takes no messages here: consent, as dispatch's own.
            suppressed = outcome(MessageSuppressed, row, now, reason="consent")
            metrics.SUPPRESSIONS.labels("consent").inc()
            return Outcome(SendUpdate(key, "suppressed", error=error), suppressed), "suppressed"
        if step.status == "pending" and step.retry_in is not None:
            update = SendUpdate(key, "pending", error=error, due_at=now + step.retry_in)
            event = outcome(MessageFailed, row, now, error=error, retryable=True)
            return Outcome(update, event), "retry"
        if not step.dead_letter:
            error = f"{error} (gave up after {attempts} attempts)"
        event = outcome(MessageFailed, row, now, error=error[:2000], retryable=False)
        letter = (
            DeadLetter(_dead_letter_record(row), DEAD_LETTER_ERROR, error)
            if step.dead_letter
            else None
        )
        return Outcome(SendUpdate(key, "failed", error=error), event, letter), "failed"


async def _cancel(tasks: Sequence[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _contender(row: LedgerRow, rules: _Rules) -> Contender:
    topic_id = row.subscription_topic
    return Contender(
        message_id=row.message_id,
        channel=row.channel,
        requested_at=row.created_at or datetime.now(UTC),
        priority=row.priority,
        on_conflict="defer" if row.on_conflict == "defer" else "drop",
        transactional=row.transactional,
        # The zone the message named; only quiet hours read it.
        zone=profile_zone(row.time_zone if rules.policy.quiet_hours else None),
        traits=_trait_answers(row.consent),
        # A topic deleted since the message was requested: its recorded answers still hold.
        topic=rules.topics.get(topic_id, TopicRule(topic_id)) if topic_id else None,
    )


def _winner(row: LedgerRow) -> ArbitrationWinner:
    return ArbitrationWinner(
        message_id=row.message_id,
        journey=JourneyRef.model_validate(row.journey),
        priority=row.priority,
    )


def _trait_answers(carried: dict[str, Any] | None) -> TraitAnswers:
    """The consent the message's traits carried (`message.rendered` `consent`), as stored."""
    if not carried:
        return NO_TRAIT_ANSWERS
    return TraitAnswers(carried.get("channels") or {}, carried.get("subscriptions") or {})


def _outgoing(row: LedgerRow, unsubscribe_url: str | None = None) -> OutgoingMessage:
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
        unsubscribe_url=unsubscribe_url,
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
        subscription_topic=row.subscription_topic,
        consent=CarriedConsent.model_validate(row.consent) if row.consent else None,
    )
    event = Event(data=rendered, key=row.profile_id, source="closeloop/dispatch", id=row.event_id)
    return _LedgerRecord(
        topics.DELIVERIES, -1, -1, event.key.encode(), event.value(), event.headers()
    )

"""The consumer: a batch of events in, one database transaction, offsets committed after it."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from libs.common import metrics
from libs.common.bus.abandon import stop_broken_client
from libs.common.bus.dlq import DeadLetter, send_to_dlq
from libs.common.bus.inbox import claim_new_events
from libs.common.bus.outbox import OutboxRelay, write_outbox
from libs.common.bus.producer import EventProducer
from libs.common.bus.record import KafkaRecord as Record
from libs.common.db import checked_schema, is_transaction_conflict, session_transaction
from libs.common.events import Event, EventData, EventDecodeError, decode
from libs.common.events.envelope import registry
from libs.common.settings import Settings

_log = logging.getLogger(__name__)

D = TypeVar("D", bound=EventData)
Records = dict[TopicPartition, list[Record]]

# A batch of fewer events than this tells too little to decide that a dependency is down.
_MIN_EVENTS_TO_JUDGE_DEPENDENCY = 10
_MAX_DEPENDENCY_BACKOFF_SECONDS = 30.0
_LIVENESS_SECONDS = 120.0
_STOP_GRACE_SECONDS = 30.0
_RESTART_BACKOFF_SECONDS = 1.0
_OLD_CLIENT_STOP_SECONDS = 10.0
# Events decoded between two chances for the batch in flight to run (about 0.2 ms of CPU).
_DECODE_SLICE = 32
# A transaction PostgreSQL rolled back because of another one (a deadlock, a serialization
# failure) is run again this many times before it counts as the batch failing.
_CONFLICT_RERUNS = 5


class DependencyUnavailable(Exception):
    """Raised by a handler when something it needs is down: retry later, never dead-letter."""


class UnprocessableEvent(Exception):
    """Raised by a handler when an event can never be handled as it is (it names a template
    that does not exist, say): it goes to the DLQ at once, without retries.

    Unlike an unexpected error, it says nothing about the handler's dependencies, so a run of
    them is not taken for an outage.
    """


@dataclass
class Batch:
    """What a handler gets: new events in order, the transaction's session, and the outbox."""

    events: list[Event[Any]]
    session: AsyncSession
    emitted: list[Event[Any]] = field(default_factory=list)

    def of_type(self, model: type[D]) -> list[Event[D]]:
        return [event for event in self.events if isinstance(event.data, model)]

    def emit(self, event: Event[Any], *, cause: Event[Any] | None = None) -> None:
        """Publish an event when, and only if, this batch's transaction commits."""
        if cause is not None and event.traceparent is None and cause.traceparent:
            event = dataclasses.replace(event, traceparent=cause.traceparent)
        self.emitted.append(event)


BatchHandler = Callable[[Batch], Awaitable[None]]


class _DependencyDown(Exception):
    pass


class _PollOverdue(Exception):
    """A poll that did not return by its deadline.

    aiokafka's `getmany` waits without a bound for the group's next assignment while a
    rebalance is in progress; if the client's group coordination never finishes that rebalance
    (suspected in a fault-injection run: after a broker cut during a rejoin a consumer stopped
    polling, and nothing was logged), the poll would wait for ever.
    """

    def __init__(self, deadline_seconds: float) -> None:
        super().__init__(
            f"a poll did not return within {deadline_seconds:.0f} s "
            "(waiting for a group assignment that did not come)"
        )


class _ClientBroken(Exception):
    """The Kafka client's background work died: it is replaced, and the group resumes."""

    def __init__(self, reason: BaseException) -> None:
        super().__init__(repr(reason))
        self.reason = reason


@dataclass
class _Polled:
    """One poll's records, decoded: what a batch is made of, and where it came from."""

    records: Records
    decoded: list[tuple[Record, Event[Any]]]
    letters: list[DeadLetter]
    generation: int

    @property
    def size(self) -> int:
        return sum(len(batch) for batch in self.records.values())


class EventConsumer:
    """Consumes topics as one consumer group and hands each batch to a handler, exactly once.

    Per batch: decode (invalid messages go to the DLQ), then one transaction that records the
    event ids in the inbox (skipping those already handled), runs the handler and writes the
    events it emits to the outbox; then the offsets are committed. A crash anywhere before the
    offset commit redelivers the batch, and the inbox turns that into a no-op.

    A failing batch is retried with backoff, then handled event by event to isolate the poison:
    those events go to the DLQ with their error and the rest commit. When most of a batch fails,
    or the database does not answer, the dependency is down, not the messages: the consumer
    seeks back and retries later rather than dead-lettering everything.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        topics: Sequence[str],
        handler: BatchHandler,
        engine: AsyncEngine,
        producer: EventProducer,
        relay: OutboxRelay | None = None,
        group: str | None = None,
        accept_types: Collection[str] | None = None,
    ) -> None:
        self.group = group or f"closeloop-{settings.service_name}"
        self.name = f"consumer:{self.group}"
        self._settings = settings
        self._topics = list(topics)
        self._handler = handler
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._schema = checked_schema(settings.schema_name)
        self._producer = producer
        self._relay = relay
        self._accept_types = frozenset(accept_types) if accept_types is not None else None
        # Registered types this consumer does not handle, as their ce_type header spells them.
        self._passed_over_types = (
            frozenset(
                model.event_type.encode()
                for model in registry.all()
                if model.event_type not in self._accept_types
            )
            if self._accept_types is not None
            else frozenset()
        )
        self._consumer: AIOKafkaConsumer | None = None
        self._in_flight = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_poll = time.monotonic()
        self._stall_reported_for: float | None = None
        self._dependency_failures = 0
        self._consecutive_failures = 0
        self._ahead: asyncio.Task[_Polled | None] | None = None
        self._generation = 0  # counts rebalances: a batch polled before one is dropped
        # Offsets of handled batches not committed to Kafka yet, and when they last were.
        self._uncommitted: dict[TopicPartition, int] = {}
        self._committed_at = time.monotonic()
        self._overdue_polls = 0  # in a row: each one doubles the next poll's deadline

    async def start(self) -> None:
        self._consumer = await self._new_client()
        self._stopping = False
        self._last_poll = time.monotonic()
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def _new_client(self) -> AIOKafkaConsumer:
        """A started client, subscribed; one that does not start within the poll deadline is
        stopped and the error raised (the caller tries again)."""
        # aiokafka binds its clients to the running loop, so they are made here, not in __init__.
        client = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            group_id=self.group,
            client_id=f"closeloop-{self._settings.service_name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self._settings.batch_max_records,
            fetch_max_wait_ms=self._settings.kafka_fetch_max_wait_ms,
            session_timeout_ms=self._settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=self._settings.kafka_session_timeout_ms // 3,
        )
        try:
            async with asyncio.timeout(self._poll_deadline_seconds()):
                await client.start()
        except BaseException:
            await stop_broken_client(client, within=_OLD_CLIENT_STOP_SECONDS)
            raise
        client.subscribe(
            self._topics,
            listener=_FinishBatchBeforeRevoke(self._in_flight, self._before_revoke),
        )
        return client

    async def _replace_client(self, reason: BaseException) -> None:
        """Stop a client whose background work died and join the group again with a new one:
        it resumes from the committed offsets, and the inbox skips what was already handled.

        Seen when the broker connection is cut: aiokafka's fetcher task can die of an error
        from the closed transport ("the handler is closed") and then nothing fetches again,
        while the consumer still looks alive.
        """
        _log.error(
            "the Kafka consumer stopped working; starting a new one",
            extra={"group": self.group, "error": repr(reason)},
        )
        metrics.CONSUMER_RESTARTS.labels(self.group).inc()
        # The new client resumes from the committed offsets; the inbox skips what was handled.
        self._uncommitted.clear()
        old, self._consumer = self._consumer, None
        if old is not None:
            await stop_broken_client(old, within=_OLD_CLIENT_STOP_SECONDS)
        while not self._stopping:
            try:
                self._consumer = await self._new_client()
                return
            except Exception as error:  # the broker may still be away: try again shortly
                _log.warning(
                    "could not start a new Kafka consumer; retrying",
                    extra={"group": self.group, "error": repr(error)},
                )
                await asyncio.sleep(_RESTART_BACKOFF_SECONDS)

    async def stop(self) -> None:
        """Finish the batch in flight, commit it, and leave the group."""
        self._stopping = True
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=_STOP_GRACE_SECONDS)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        if self._consumer is not None:
            await self._commit_handled_on_the_way_out()
            await self._consumer.stop()
            self._consumer = None

    @property
    def _client(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("the consumer is not started")
        return self._consumer

    def is_alive(self) -> bool:
        running = self._task is not None and not self._task.done()
        polling = time.monotonic() - self._last_poll < _LIVENESS_SECONDS
        if running and not polling:
            self._report_stall()
        return running and polling

    def _report_stall(self) -> None:
        """Log, once per stall, where the consumer's loop and aiokafka's group coordination
        wait. Seen once in fault injection: after a broker cut during a group join a consumer
        stopped polling with nothing logged, and its cause is not known yet."""
        if self._stall_reported_for == self._last_poll:
            return
        self._stall_reported_for = self._last_poll
        coordination = getattr(
            getattr(self._consumer, "_coordinator", None), "_coordination_task", None
        )
        _log.error(
            "the consumer has not polled for %.0f s",
            time.monotonic() - self._last_poll,
            extra={
                "group": self.group,
                "loop_waits_at": _stack_of(self._task),
                "coordination_waits_at": _stack_of(coordination),
            },
        )

    async def _run(self) -> None:
        try:
            while not self._stopping:
                try:
                    await self._poll_and_process()
                except Exception as error:
                    await self._drop_polled_ahead()
                    await self._recover_from(error)
        finally:
            # Nothing polled ahead was committed: the group polls it again after us.
            ahead, self._ahead = self._ahead, None
            if ahead is not None:
                ahead.cancel()
                ahead.add_done_callback(_retrieve_outcome)

    async def _poll_and_process(self) -> None:
        try:
            polled = await self._next_polled()
        except _ClientBroken as broken:
            await self._replace_client(broken.reason)
            return
        if polled is None:
            async with self._in_flight:  # caught up: nothing more to wait for
                await self._commit_handled()
            return
        if polled.size >= self._settings.batch_max_records:
            # Behind (the poll came back full): the next batch is fetched and decoded while
            # this one's transaction waits on the database, work that would otherwise wait for
            # the commit. A consumer that keeps up polls after the commit instead, and so takes
            # all that arrived meanwhile as one batch: fewer, larger transactions.
            self._ahead = asyncio.create_task(self._poll(), name=f"{self.name}:poll-ahead")
        async with self._in_flight:
            await self._process(polled)

    async def _next_polled(self) -> _Polled | None:
        """The batch polled ahead, or a new poll; None when there is nothing to handle.

        A batch polled before a rebalance is dropped: its partitions may belong to another
        consumer now, and the new assignment starts again from the committed offsets.
        """
        ahead, self._ahead = self._ahead, None
        polled = await ahead if ahead is not None else await self._poll()
        if polled is None or polled.generation != self._generation:
            return None
        return polled

    async def _poll(self) -> _Polled | None:
        consumer = self._client
        broken = _background_failure(consumer)
        if broken is not None:
            raise _ClientBroken(broken)
        deadline = self._poll_deadline_seconds()
        try:
            async with asyncio.timeout(deadline):
                records = await consumer.getmany(
                    timeout_ms=self._settings.batch_max_wait_ms,
                    max_records=self._settings.batch_max_records,
                )
        except KafkaError as error:  # retriable ones are retried inside aiokafka
            raise _ClientBroken(error) from error
        except TimeoutError as error:
            self._overdue_polls += 1
            raise _ClientBroken(_PollOverdue(deadline)) from error
        self._overdue_polls = 0
        # Taken when the records are: a rebalance revokes before it assigns, so records
        # returned after a revocation belong to the new assignment.
        generation = self._generation
        self._last_poll = time.monotonic()
        if not records:
            return None
        decoded, letters = await self._decode(
            [record for batch in records.values() for record in batch]
        )
        return _Polled(records, decoded, letters, generation)

    def _poll_deadline_seconds(self) -> float:
        """The setting, doubled for each poll in a row that overran it (at most 4 times): a
        group join that is slow rather than stuck, longer than the deadline, then still
        completes instead of being given up again and again."""
        return self._settings.kafka_poll_deadline_ms / 1000 * (1 << min(self._overdue_polls, 2))

    async def _drop_polled_ahead(self) -> None:
        """Cancel the poll ahead, and give back what it had polled, so nothing is skipped."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return
        ahead.cancel()
        await asyncio.wait([ahead])  # unlike awaiting it, this raises only our own cancellation
        if ahead.cancelled() or ahead.exception() is not None:
            return  # its error, if any, comes back from the next poll
        polled = ahead.result()
        if polled is not None and polled.generation == self._generation:
            self._give_back(polled.records)

    def _give_back(self, records: Records) -> None:
        """Seek each partition back to the batch's first offset: the next poll returns it again."""
        for tp, batch in records.items():
            with contextlib.suppress(IllegalStateError):  # not assigned to us any more
                self._client.seek(tp, batch[0].offset)

    def _rebalanced(self) -> None:
        self._generation += 1

    async def _recover_from(self, error: Exception) -> None:
        """Anything but a handler's error (those are retried and dead-lettered in `_handle`)
        must not end the loop: an offset commit on a cut connection, say, or aiokafka's group
        coordinator dying of the closed transport, which `getmany` then raises as a
        RuntimeError. A batch in flight was not committed, so a new client redelivers it from
        the committed offsets, and the inbox skips what its transaction did.

        Seen in fault injection, both: the error ended the consumer's task, and the service
        then never consumed again while every other part of it looked well.
        """
        _log.error(
            "the consumer failed outside a handler; resuming from the committed offsets",
            exc_info=error,
            extra={"group": self.group},
        )
        await self._replace_client(error)

    async def _process(self, polled: _Polled) -> None:
        started = time.perf_counter()
        letters = polled.letters
        try:
            letters += await self._handle(polled.decoded)
        except _DependencyDown:
            await self._retry_later(polled.records)
            return
        if letters:
            await send_to_dlq(self._producer, self.group, letters)
        self._uncommitted.update({tp: batch[-1].offset + 1 for tp, batch in polled.records.items()})
        if time.monotonic() - self._committed_at >= self._settings.kafka_commit_interval_ms / 1000:
            await self._commit_handled()
        self._dependency_failures = 0
        metrics.HANDLER_DURATION.labels(self.group).observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.labels(self.group).observe(polled.size)

    async def _decode(
        self, records: Sequence[Record]
    ) -> tuple[list[tuple[Record, Event[Any]]], list[DeadLetter]]:
        """Decode in slices, letting the batch in flight run between them: its transaction's
        replies from the database are then taken as they come, while this fills the waits."""
        decoded: list[tuple[Record, Event[Any]]] = []
        letters: list[DeadLetter] = []
        for index, record in enumerate(records):
            if index and not index % _DECODE_SLICE:
                await asyncio.sleep(0)
            if not self._may_accept(record.headers):
                continue
            try:
                event = decode(record.key, record.value, record.headers)
            except EventDecodeError as error:
                letters.append(DeadLetter(record, "invalid_event", str(error)))
                metrics.EVENTS_FAILED.labels(self.group, record.topic, "invalid").inc()
                _log.warning(
                    "invalid event sent to the DLQ",
                    extra={"topic": record.topic, "offset": record.offset, "error": str(error)},
                )
                continue
            if self._accept_types is None or event.type in self._accept_types:
                decoded.append((record, event))
        return decoded, letters

    def _may_accept(self, headers: Sequence[tuple[str, bytes]]) -> bool:
        """False for an event of a registered type this consumer does not handle, told from its
        ce_type header before its value is decoded and validated: a topic carries several
        types, and most consumers handle some. Whether such an event is valid is for the
        consumers that handle its type to judge. Anything else is decoded, and an event that
        does not decode (no ce_type, a type nobody registered) goes to the DLQ with the reason.
        """
        if not self._passed_over_types:
            return True
        event_type = None
        for name, raw in headers:
            if name == "ce_type":
                event_type = raw  # the last one, as decode reads it
        return event_type not in self._passed_over_types

    async def _handle(self, decoded: list[tuple[Record, Event[Any]]]) -> list[DeadLetter]:
        if not decoded:
            return []
        attempts = self._settings.handler_max_attempts
        for attempt in range(1, attempts + 1):
            try:
                await self._transact_through_conflicts(decoded)
                self._consecutive_failures = 0
                return []
            except DependencyUnavailable as error:
                _log.warning(
                    "dependency unavailable", extra={"group": self.group, "error": str(error)}
                )
                raise _DependencyDown from error
            except UnprocessableEvent:
                break  # retrying cannot help: find the event, one by one
            except Exception:
                _log.exception("batch failed", extra={"group": self.group, "attempt": attempt})
                metrics.BATCH_RETRIES.labels(self.group).inc()
                if attempt < attempts:
                    await asyncio.sleep(
                        self._settings.handler_retry_backoff_ms / 1000 * 2 ** (attempt - 1)
                    )
        if not await self._database_answers():
            raise _DependencyDown
        return await self._isolate_poison(decoded)

    async def _isolate_poison(self, decoded: list[tuple[Record, Event[Any]]]) -> list[DeadLetter]:
        """Handle the events one by one: those that still fail are the poison."""
        letters: list[DeadLetter] = []
        failed = tried = 0
        for record, event in decoded:
            try:
                await self._transact_through_conflicts([(record, event)])
            except DependencyUnavailable as error:
                raise _DependencyDown from error
            except UnprocessableEvent as error:
                letters.append(self._dead_letter(record, event, error))
            except Exception as error:
                self._consecutive_failures += 1
                failed, tried = failed + 1, tried + 1
                letters.append(self._dead_letter(record, event, error))
                if self._dependency_looks_down(failed, tried):
                    raise _DependencyDown from error
            else:
                self._consecutive_failures = 0
                tried += 1
        return letters

    def _dead_letter(self, record: Record, event: Event[Any], error: Exception) -> DeadLetter:
        metrics.EVENTS_FAILED.labels(self.group, record.topic, "handler").inc()
        _log.warning(
            "event failed on its own",
            extra={"event_id": event.id, "type": event.type, "error": repr(error)},
        )
        return DeadLetter(record, type(error).__name__, str(error) or repr(error))

    def _dependency_looks_down(self, failed: int, tried: int) -> bool:
        """Poison is rare and scattered; a dependency outage fails event after event."""
        if self._consecutive_failures >= self._settings.dlq_max_consecutive_failures:
            return True
        return (
            tried >= _MIN_EVENTS_TO_JUDGE_DEPENDENCY
            and failed / tried > self._settings.dlq_max_failure_ratio
        )

    async def _transact_through_conflicts(
        self, decoded: Sequence[tuple[Record, Event[Any]]]
    ) -> None:
        """Run the batch's transaction again when PostgreSQL rolled it back for a conflict with
        another transaction: nothing is wrong with its events, and a rerun goes through (a
        deadlock between two replicas' batches fails one of them, for instance)."""
        for rerun in range(_CONFLICT_RERUNS + 1):
            try:
                await self._transact(decoded)
                return
            except Exception as error:
                if rerun == _CONFLICT_RERUNS or not is_transaction_conflict(error):
                    raise
                metrics.BATCH_RETRIES.labels(self.group).inc()
                _log.warning(
                    "transaction rolled back by a conflict with another; running it again",
                    extra={"group": self.group, "error": str(error)},
                )
                await asyncio.sleep(self._settings.handler_retry_backoff_ms / 1000 * rerun)

    async def _transact(self, decoded: Sequence[tuple[Record, Event[Any]]]) -> None:
        events = [event for _, event in decoded]
        async with session_transaction(self._sessions) as session:
            fresh = await claim_new_events(session, self._schema, self.group, events)
            batch = Batch(fresh, session)
            if fresh:
                await self._handler(batch)
                await write_outbox(session, self._schema, batch.emitted)
        if batch.emitted and self._relay is not None:
            self._relay.notify()
        self._count(decoded, fresh)

    def _count(self, decoded: Sequence[tuple[Record, Event[Any]]], fresh: list[Event[Any]]) -> None:
        # Counted per (topic, type) first: one labelled increment each, not one per event.
        consumed: collections.Counter[tuple[str, str]] = collections.Counter()
        duplicates: collections.Counter[str] = collections.Counter()
        if len(fresh) == len(decoded):  # nothing seen before: the usual batch
            consumed.update((record.topic, event.data.event_type) for record, event in decoded)
        else:
            fresh_ids = {event.id for event in fresh}
            for record, event in decoded:
                if event.id in fresh_ids:
                    fresh_ids.discard(event.id)
                    consumed[record.topic, event.type] += 1
                else:
                    duplicates[record.topic] += 1
        for (topic, event_type), count in consumed.items():
            metrics.EVENTS_CONSUMED.labels(self.group, topic, event_type).inc(count)
        for topic, count in duplicates.items():
            metrics.EVENTS_DUPLICATE.labels(self.group, topic).inc(count)

    async def _database_answers(self) -> bool:
        try:
            async with asyncio.timeout(5), self._engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def _commit_handled(self) -> None:
        """Commit the offsets of the batches handled since the last commit.

        Not after every batch: each commit is a request the broker serves, and redelivering a
        handled batch is safe (its inbox rows make it a no-op). At most
        `kafka_commit_interval_ms` of handled batches wait, and none once the consumer has
        caught up, is stopped, or gives its partitions up in a rebalance.
        """
        self._committed_at = time.monotonic()
        offsets, self._uncommitted = self._uncommitted, {}
        if not offsets:
            return
        try:
            # A TimeoutError goes on to `_recover_from`: a new client, from the committed offsets.
            async with asyncio.timeout(self._settings.kafka_commit_timeout_ms / 1000):
                await self._client.commit(offsets)
        except (CommitFailedError, IllegalStateError) as error:
            # The group rebalanced: the next owner redelivers, and its inbox skips what we did.
            _log.warning("offset commit refused after a rebalance", extra={"error": str(error)})
            return
        assigned = self._client.assignment()
        for tp, offset in offsets.items():
            highwater = self._client.highwater(tp) if tp in assigned else None
            if highwater is not None:
                metrics.CONSUMER_LAG.labels(self.group, tp.topic, tp.partition).set(
                    highwater - offset
                )

    async def _before_revoke(self) -> None:
        """Called with the batch in flight done: commit what was handled, for the next owner of
        these partitions to start after it, and drop a batch polled ahead."""
        await self._commit_handled_on_the_way_out()
        self._rebalanced()

    async def _commit_handled_on_the_way_out(self) -> None:
        try:
            await self._commit_handled()
        except Exception as error:  # the next owner redelivers; the inbox skips it
            _log.warning(
                "could not commit the handled offsets",
                extra={"group": self.group, "error": repr(error)},
            )

    async def _retry_later(self, records: Records) -> None:
        """Rewind to the batch's start and back off: it is polled again, so the group keeps us."""
        self._dependency_failures += 1
        delay = min(
            _MAX_DEPENDENCY_BACKOFF_SECONDS,
            self._settings.handler_retry_backoff_ms / 1000 * 2**self._dependency_failures,
        )
        _log.warning(
            "dependency down; batch will be retried",
            extra={"group": self.group, "retry_in_seconds": delay},
        )
        await self._drop_polled_ahead()
        self._give_back(records)
        await asyncio.sleep(delay)


class _FinishBatchBeforeRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Lets the batch in flight finish before its partitions are taken away, then tells the
    consumer, which commits what it handled and drops a batch it polled ahead under the old
    assignment."""

    def __init__(
        self, in_flight: asyncio.Lock, before_revoke: Callable[[], Awaitable[None]]
    ) -> None:
        self._in_flight = in_flight
        self._before_revoke = before_revoke

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        async with self._in_flight:
            await self._before_revoke()

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        return None


def _retrieve_outcome(task: asyncio.Task[Any]) -> None:
    """Marks a dropped task's error as seen, so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


def _stack_of(task: object) -> str:
    """Where an asyncio task waits: its chain of awaits, outermost first ('' for no task)."""
    if not isinstance(task, asyncio.Task):
        return ""
    lines = []
    awaited: Any = task.get_coro()
    for _ in range(100):  # the chain, bounded
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is not None:
            code = frame.f_code
            lines.append(f"{code.co_filename}:{frame.f_lineno} in {code.co_name}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        if awaited is None:
            break
    return "\n".join(lines)


def _background_failure(client: AIOKafkaConsumer) -> BaseException | None:
    """Why the client's background fetching stopped, if it has (aiokafka 0.x keeps the fetch
    loop in `_fetcher.error_future`; nothing public says it died). A dead group coordination
    routine needs no check here: `getmany` raises its error, and `_recover_from` takes it."""
    fetcher = getattr(client, "_fetcher", None)
    task = getattr(fetcher, "error_future", None)
    if not isinstance(task, asyncio.Future) or not task.done():
        return None
    if task.cancelled():
        return RuntimeError("the fetch loop was cancelled")
    return task.exception() or RuntimeError("the fetch loop ended")

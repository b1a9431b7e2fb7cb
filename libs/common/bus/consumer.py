"""The consumer: a batch of events in, one database transaction, offsets committed after it.

Its steps, each in a module of its own: `polling` (a poll, and one ahead while behind),
`decoding` (the ce_type filter, then decode), `dead_letter_policy` (retries, poison isolation,
the DLQ limit) around `processing` (the inbox claim, the handler and the outbox in one
transaction), `commits` (offsets of handled records), and `client` (the aiokafka client,
replaced when it dies). This module runs them in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.common import metrics
from libs.common.bus.batch import (
    Batch,
    BatchHandler,
    DependencyUnavailable,
    UnprocessableEvent,
)
from libs.common.bus.client import ClientBroken, ConsumerClient
from libs.common.bus.commits import OffsetCommits
from libs.common.bus.dead_letter_policy import DeadLetterPolicy, DependencyDown
from libs.common.bus.decoding import Decoding
from libs.common.bus.dlq import send_to_dlq
from libs.common.bus.outbox import OutboxRelay
from libs.common.bus.polling import Polled, Polls
from libs.common.bus.processing import BatchTransaction
from libs.common.bus.producer import EventProducer
from libs.common.settings import Settings

__all__ = ["Batch", "BatchHandler", "DependencyUnavailable", "EventConsumer", "UnprocessableEvent"]

_log = logging.getLogger(__name__)

_LIVENESS_SECONDS = 120.0
_STOP_GRACE_SECONDS = 30.0


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
        self.group = group or consumer_group(settings)
        self.name = f"consumer:{self.group}"
        self._settings = settings
        self._producer = producer
        self._in_flight = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stall_reported_for: float | None = None
        self._clients = ConsumerClient(
            settings,
            group=self.group,
            topics=topics,
            in_flight=self._in_flight,
            before_revoke=self._before_revoke,
        )
        self._polls = Polls(self._clients, Decoding(self.group, accept_types), name=self.name)
        transaction = BatchTransaction(
            settings, group=self.group, handler=handler, engine=engine, relay=relay
        )
        self._policy = DeadLetterPolicy(
            settings,
            group=self.group,
            transaction=transaction.run,
            database_answers=transaction.database_answers,
        )
        self._commits = OffsetCommits(settings, group=self.group, client=lambda: self._client)

    async def start(self) -> None:
        await self._clients.start()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=self.name)

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
            await self._clients.stop()

    def is_alive(self) -> bool:
        running = self._task is not None and not self._task.done()
        polling = time.monotonic() - self._clients.last_poll < _LIVENESS_SECONDS
        if running and not polling:
            self._report_stall()
        return running and polling

    @property
    def _consumer(self) -> AIOKafkaConsumer | None:
        return self._clients.current

    @property
    def _client(self) -> AIOKafkaConsumer:
        return self._clients.client

    @property
    def _overdue_polls(self) -> int:
        return self._clients.overdue_polls

    async def _run(self) -> None:
        try:
            while not self._stopping:
                try:
                    await self._poll_and_process()
                except Exception as error:
                    await self._polls.drop_ahead()
                    await self._recover_from(error)
        finally:
            self._polls.abandon_ahead()

    async def _poll_and_process(self) -> None:
        try:
            polled = await self._polls.next()
        except ClientBroken as broken:
            await self._replace_client(broken.reason)
            return
        if polled is None:
            async with self._in_flight:  # caught up: nothing more to wait for
                await self._commits.commit()
            return
        if polled.size >= self._settings.batch_max_records:
            # Behind (the poll came back full): the next batch is fetched and decoded while
            # this one's transaction waits on the database, work that would otherwise wait for
            # the commit. A consumer that keeps up polls after the commit instead, and so takes
            # all that arrived meanwhile as one batch: fewer, larger transactions.
            self._polls.poll_ahead()
        async with self._in_flight:
            await self._process(polled)

    async def _process(self, polled: Polled) -> None:
        started = time.perf_counter()
        letters = polled.letters
        try:
            letters += await self._policy.handle(polled.decoded)
        except DependencyDown:
            await self._retry_later(polled)
            return
        if letters:
            await send_to_dlq(self._producer, self.group, letters)
        self._commits.handled(polled.records)
        if self._commits.due():
            await self._commits.commit()
        self._policy.recovered()
        metrics.HANDLER_DURATION.labels(self.group).observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.labels(self.group).observe(polled.size)

    async def _retry_later(self, polled: Polled) -> None:
        """Rewind to the batch's start and back off: it is polled again, so the group keeps us."""
        delay = self._policy.retry_delay()
        await self._polls.drop_ahead()
        self._clients.give_back(polled.records)
        await asyncio.sleep(delay)

    async def _before_revoke(self) -> None:
        """Called with the batch in flight done: commit what was handled, for the next owner of
        these partitions to start after it, and drop a batch polled ahead."""
        await self._commit_handled_on_the_way_out()
        self._polls.rebalanced()

    async def _commit_handled_on_the_way_out(self) -> None:
        try:
            await self._commits.commit()
        except Exception as error:  # the next owner redelivers; the inbox skips it
            _log.warning(
                "could not commit the handled offsets",
                extra={"group": self.group, "error": repr(error)},
            )

    async def _recover_from(self, error: Exception) -> None:
        """Anything but a handler's error (those are retried and dead-lettered by the policy)
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

    async def _replace_client(self, reason: BaseException) -> None:
        # The new client resumes from the committed offsets; the inbox skips what was handled.
        self._commits.forget()
        await self._clients.replace(reason, wanted=lambda: not self._stopping)

    def _report_stall(self) -> None:
        """Log, once per stall, where the consumer's loop and aiokafka's group coordination
        wait. Seen once in fault injection: after a broker cut during a group join a consumer
        stopped polling with nothing logged, and its cause is not known yet."""
        last_poll = self._clients.last_poll
        if self._stall_reported_for == last_poll:
            return
        self._stall_reported_for = last_poll
        _log.error(
            "the consumer has not polled for %.0f s",
            time.monotonic() - last_poll,
            extra={
                "group": self.group,
                "loop_waits_at": _stack_of(self._task),
                "coordination_waits_at": _stack_of(self._clients.coordination_task()),
            },
        )


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


def consumer_group(settings: Settings) -> str:
    """The consumer group a service reads as: `closeloop-<service>`."""
    return f"closeloop-{settings.service_name}"

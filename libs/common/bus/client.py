"""The consumer's aiokafka client: made, subscribed, polled within a deadline, and replaced
when its background work died."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from libs.common import metrics
from libs.common.bus.abandon import stop_broken_client
from libs.common.bus.record import KafkaRecord
from libs.common.settings import Settings

# The consumer's log lines keep the logger name they have always had.
_log = logging.getLogger("libs.common.bus.consumer")

_RESTART_BACKOFF_SECONDS = 1.0
_OLD_CLIENT_STOP_SECONDS = 10.0

Records = dict[TopicPartition, list[KafkaRecord]]


class PollOverdue(Exception):
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


class ClientBroken(Exception):
    """The Kafka client's background work died: it is replaced, and the group resumes."""

    def __init__(self, reason: BaseException) -> None:
        super().__init__(repr(reason))
        self.reason = reason


class ConsumerClient:
    """Holds the consumer's aiokafka client, and replaces it when it stops working."""

    def __init__(
        self,
        settings: Settings,
        *,
        group: str,
        topics: Sequence[str],
        in_flight: asyncio.Lock,
        before_revoke: Callable[[], Awaitable[None]],
    ) -> None:
        self._settings = settings
        self._group = group
        self._topics = list(topics)
        self._in_flight = in_flight
        self._before_revoke = before_revoke
        self.current: AIOKafkaConsumer | None = None
        self.last_poll = time.monotonic()
        self.overdue_polls = 0  # in a row: each one doubles the next poll's deadline

    @property
    def client(self) -> AIOKafkaConsumer:
        if self.current is None:
            raise RuntimeError("the consumer is not started")
        return self.current

    async def start(self) -> None:
        self.current = await self._new_client()
        self.last_poll = time.monotonic()

    async def stop(self) -> None:
        if self.current is not None:
            await self.current.stop()
            self.current = None

    async def _new_client(self) -> AIOKafkaConsumer:
        """A started client, subscribed; one that does not start within the poll deadline is
        stopped and the error raised (the caller tries again)."""
        # aiokafka binds its clients to the running loop, so they are made here, not earlier.
        client = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            group_id=self._group,
            client_id=f"closeloop-{self._settings.service_name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self._settings.batch_max_records,
            fetch_max_wait_ms=self._settings.kafka_fetch_max_wait_ms,
            session_timeout_ms=self._settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=self._settings.kafka_session_timeout_ms // 3,
        )
        try:
            async with asyncio.timeout(self.poll_deadline_seconds()):
                await client.start()
        except BaseException:
            await stop_broken_client(client, within=_OLD_CLIENT_STOP_SECONDS)
            raise
        client.subscribe(
            self._topics, listener=FinishBatchBeforeRevoke(self._in_flight, self._before_revoke)
        )
        return client

    async def replace(self, reason: BaseException, *, wanted: Callable[[], bool]) -> None:
        """Stop a client whose background work died and join the group again with a new one
        (trying again while `wanted()`): it resumes from the committed offsets.

        Seen when the broker connection is cut: aiokafka's fetcher task can die of an error
        from the closed transport ("the handler is closed") and then nothing fetches again,
        while the consumer still looks alive.
        """
        _log.error(
            "the Kafka consumer stopped working; starting a new one",
            extra={"group": self._group, "error": repr(reason)},
        )
        metrics.CONSUMER_RESTARTS.labels(self._group).inc()
        old, self.current = self.current, None
        if old is not None:
            await stop_broken_client(old, within=_OLD_CLIENT_STOP_SECONDS)
        while wanted():
            try:
                self.current = await self._new_client()
                return
            except Exception as error:  # the broker may still be away: try again shortly
                _log.warning(
                    "could not start a new Kafka consumer; retrying",
                    extra={"group": self._group, "error": repr(error)},
                )
                await asyncio.sleep(_RESTART_BACKOFF_SECONDS)

    async def poll(self) -> Records:
        """The next records, by partition; raises `ClientBroken` for a client to replace."""
        client = self.client
        broken = background_failure(client)
        if broken is not None:
            raise ClientBroken(broken)
        deadline = self.poll_deadline_seconds()
        try:
            async with asyncio.timeout(deadline):
                records: Records = await client.getmany(
                    timeout_ms=self._settings.batch_max_wait_ms,
                    max_records=self._settings.batch_max_records,
                )
        except KafkaError as error:  # retriable ones are retried inside aiokafka
            raise ClientBroken(error) from error
        except TimeoutError as error:
            self.overdue_polls += 1
            raise ClientBroken(PollOverdue(deadline)) from error
        self.overdue_polls = 0
        self.last_poll = time.monotonic()
        return records

    def poll_deadline_seconds(self) -> float:
        """The setting, doubled for each poll in a row that overran it (at most 4 times): a
        group join that is slow rather than stuck, longer than the deadline, then still
        completes instead of being given up again and again."""
        return self._settings.kafka_poll_deadline_ms / 1000 * (1 << min(self.overdue_polls, 2))

    def give_back(self, records: Records) -> None:
        """Seek each partition back to the batch's first offset: the next poll returns it again."""
        for tp, batch in records.items():
            with contextlib.suppress(IllegalStateError):  # not assigned to us any more
                self.client.seek(tp, batch[0].offset)

    def coordination_task(self) -> object:
        """aiokafka's group coordination routine, for a stall report (None without one)."""
        return getattr(getattr(self.current, "_coordinator", None), "_coordination_task", None)


class FinishBatchBeforeRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
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


def background_failure(client: AIOKafkaConsumer) -> BaseException | None:
    """Why the client's background fetching stopped, if it has (aiokafka 0.x keeps the fetch
    loop in `_fetcher.error_future`; nothing public says it died). A dead group coordination
    routine needs no check here: `getmany` raises its error, and the consumer takes it."""
    fetcher = getattr(client, "_fetcher", None)
    task = getattr(fetcher, "error_future", None)
    if not isinstance(task, asyncio.Future) or not task.done():
        return None
    if task.cancelled():
        return RuntimeError("the fetch loop was cancelled")
    return task.exception() or RuntimeError("the fetch loop ended")

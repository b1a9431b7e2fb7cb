"""The one Kafka producer a process uses: acks=all, batched sends, CloudEvents binary mode."""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from libs.common import metrics
from libs.common.bus.abandon import stop_broken_client
from libs.common.events import Event, encode
from libs.common.events.envelope import Headers
from libs.common.settings import Settings

_log = logging.getLogger(__name__)
# Keys seen recently, and their partition: hashing a key (aiokafka's murmur2 is pure Python)
# costs more than the rest of placing a message, and one person's events keep coming.
_PLACEMENT_CACHE_KEYS = 65_536
_STOP_SECONDS = 5.0


class Message(NamedTuple):
    """One Kafka message as `publish_messages` takes it (what `encode` gives, with its topic).

    `event_type` is the event's `ce_type`, for `closeloop_events_produced_total`; a message
    without one (empty) is published but not counted as an event.
    """

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    event_type: str = ""


class EventProducer:
    """Publishes events and waits for Kafka's acknowledgement of all of them together.

    Sends are queued first and awaited together so aiokafka can batch them (awaiting each
    send in turn defeats batching, aiokafka #1065). `publish` goes further: it appends the
    messages of every caller to one open batch per partition and hands aiokafka whole batches,
    so the per-message work of `AIOKafkaProducer.send` is paid once per batch.
    """

    name = "producer"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: AIOKafkaProducer | None = None
        self._started = False  # between start and stop: a missing client is then replaced
        self._partition_counts: dict[str, int] = {}
        self._replacing = asyncio.Lock()
        self._partitions: dict[tuple[str, int], _PartitionQueue] = {}

    async def start(self) -> None:
        self._client = await self._new_client()
        self._started = True

    async def _new_client(self) -> AIOKafkaProducer:
        """A started client; one that fails to start is stopped and the error raised."""
        # aiokafka binds its clients to the running loop, so they are made here, not in __init__.
        client = AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            client_id=f"closeloop-{self._settings.service_name}",
            acks="all",
            enable_idempotence=self._settings.kafka_idempotence,
            linger_ms=2,
            max_batch_size=256 * 1024,
            request_timeout_ms=30_000,
        )
        try:
            await client.start()
        except BaseException:
            await stop_broken_client(client, within=_STOP_SECONDS)
            raise
        return client

    async def _working_client(self) -> AIOKafkaProducer:
        """The client, or a new one in its place if its sender died.

        Seen when the broker connection is cut: aiokafka's sender task can die of an error
        from the closed transport ("Unexpected error during batch delivery"), after which every
        send fails with that error for good. Callers retry what failed (the outbox relay keeps
        its rows until they are acknowledged), so replacing the client is all it takes. A new
        client that cannot start (the broker still away) raises to the caller, and the next
        call tries again.
        """
        client = self._client
        if client is not None and _sender_failure(client) is None:
            return client
        if not self._started:
            raise RuntimeError("the producer is not started")
        async with self._replacing:
            current = self._client
            if current is not None and _sender_failure(current) is None:
                return current  # another send replaced it meanwhile
            if current is not None:
                _log.error(
                    "the Kafka producer stopped working; starting a new one",
                    extra={"error": repr(_sender_failure(current))},
                )
                metrics.PRODUCER_RESTARTS.inc()
                self._client = None
                await stop_broken_client(current, within=_STOP_SECONDS)
            self._client = await self._new_client()
            return self._client

    async def stop(self) -> None:
        """Hand aiokafka every batch still open, then stop it (which sends what it holds).

        Given up after `_STOP_SECONDS`: with the broker away, aiokafka would retry until its
        request timeout, and nothing unacknowledged was promised to anyone (ingest answered no
        call for it; an outbox keeps its rows until Kafka acknowledges them).
        """
        self._started = False
        try:
            async with asyncio.timeout(_STOP_SECONDS):
                submitters = [
                    q.submitter for q in self._partitions.values() if q.submitter is not None
                ]
                await asyncio.gather(*submitters, return_exceptions=True)
                client, self._client = self._client, None
                if client is not None:
                    await client.stop()
        except TimeoutError:
            self._client = None
            _log.warning("the Kafka producer did not stop in time; its unsent messages are dropped")

    def is_alive(self) -> bool:
        """Started and not stopped: a client being replaced (the broker away) is not a reason to
        restart the process, which would only start another client against the same broker."""
        return self._started

    @property
    def _producer(self) -> AIOKafkaProducer:
        if self._client is None:
            raise RuntimeError("the producer is not started")
        return self._client

    async def publish(self, events: Sequence[Event[Any]]) -> None:
        """Publish events in order; returns once Kafka has acknowledged every one of them."""
        await self.publish_messages(
            [Message(event.topic, *encode(event), event.type) for event in events]
        )

    async def publish_messages(self, messages: Sequence[Message]) -> None:
        """Publish messages in order; returns once Kafka has acknowledged every one of them.

        Each message goes to the partition aiokafka's default partitioner picks for its key, so
        a key's messages land on one partition, in order, whichever path sent them. Messages of
        concurrent callers share batches; a caller waits only for the batches that hold its
        own. The first failure is raised after all of them have settled.
        """
        if not messages:
            return
        client = await self._working_client()
        # Sorted, as aiokafka lists them for its partitioner (a set of 0..n-1 iterates in order).
        partitions = {
            topic: sorted(await client.partitions_for(topic))
            for topic in {m.topic for m in messages}
        }
        acknowledgements = {
            self._append(client, m, _partition_of(m.key, partitions[m.topic])) for m in messages
        }
        # asyncio.wait, not gather: a caller that gives up (its timeout) must not cancel the
        # acknowledgement of a batch other callers share.
        await asyncio.wait(acknowledgements)
        for acknowledgement in acknowledgements:
            if (failure := acknowledgement.exception()) is not None:
                raise failure
        _count_produced(messages)

    async def partition_count(self, topic: str) -> int:
        """How many partitions the topic has, as this producer's metadata said the first time it
        was asked: what `partition_of` places a key among, as `publish_messages` does.

        Kept once known, so a caller inside a database transaction asks the broker only once
        per topic and process; partitions are added rarely, and a key then moves anyway.
        """
        count = self._partition_counts.get(topic)
        if count is None:
            client = await self._working_client()
            count = self._partition_counts[topic] = len(await client.partitions_for(topic))
        return count

    def _append(
        self, client: AIOKafkaProducer, message: Message, partition: int
    ) -> asyncio.Future[None]:
        """Add the message to its partition's open batch; the future settles with that batch."""
        queue = self._partitions.get((message.topic, partition))
        if queue is None:
            queue = self._partitions[(message.topic, partition)] = _PartitionQueue(
                message.topic, partition
            )
        batch = queue.open[-1] if queue.open else None
        if batch is None or not batch.append(message):
            batch = _OpenBatch(client.create_batch(), asyncio.get_running_loop().create_future())
            batch.append(message)  # a batch always takes its first message, however large
            queue.open.append(batch)
        if queue.submitter is None:
            queue.submitter = asyncio.create_task(self._submit(queue))
        return batch.acknowledged

    async def _submit(self, queue: _PartitionQueue) -> None:
        """Hand the partition's batches to aiokafka in order, one at a time.

        aiokafka takes a partition's next batch only once its previous one has gone to the
        broker; meanwhile the open batch keeps filling with what callers publish, so a busy
        partition sends a few large batches rather than many small ones.
        """
        try:
            while queue.open:
                batch = queue.open.popleft()
                try:
                    client = await self._working_client()
                    sent = await client.send_batch(
                        batch.builder, queue.topic, partition=queue.partition
                    )
                except Exception as error:  # every caller of the batch hears of it
                    _settle(batch.acknowledged, error)
                    continue
                sent.add_done_callback(functools.partial(_acknowledge, batch.acknowledged))
        finally:
            queue.submitter = None

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers
    ) -> asyncio.Future[Any]:
        """Queue one message; the returned future resolves when Kafka acknowledges it."""
        client = await self._working_client()
        future: asyncio.Future[Any] = await client.send(
            topic, value=value, key=key, headers=headers
        )
        return future

    @staticmethod
    async def wait_all(futures: Sequence[asyncio.Future[Any]]) -> None:
        """Wait for every acknowledgement; the first failure is raised after all have settled."""
        results = await asyncio.gather(*futures, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result


@dataclass
class _OpenBatch:
    """A batch being filled for one partition, and the future its callers wait on."""

    builder: Any  # aiokafka's BatchBuilder
    acknowledged: asyncio.Future[None]

    def append(self, message: Message) -> bool:
        """False when the batch is full (aiokafka's max_batch_size): start another."""
        metadata = self.builder.append(
            timestamp=None, key=message.key, value=message.value, headers=message.headers
        )
        return metadata is not None


@dataclass
class _PartitionQueue:
    """One partition's batches not yet handed to aiokafka, and the task handing them over."""

    topic: str
    partition: int
    open: deque[_OpenBatch] = field(default_factory=deque)
    submitter: asyncio.Task[None] | None = None


def _count_produced(messages: Sequence[Message]) -> None:
    """Count acknowledged events by topic and type: one label lookup per pair, not per event."""
    for (topic, event_type), count in Counter((m.topic, m.event_type) for m in messages).items():
        if event_type:
            metrics.EVENTS_PRODUCED.labels(topic, event_type).inc(count)


def _partition_of(key: bytes | None, partitions: Sequence[int]) -> int:
    """The partition aiokafka's DefaultPartitioner picks for the key among `partitions`.

    `partitions` is sorted, as the partitioner expects; a message without a key goes to any.
    """
    if key is None:
        return random.choice(partitions)
    return partitions[partition_of(key, len(partitions))]


@functools.lru_cache(maxsize=_PLACEMENT_CACHE_KEYS)
def partition_of(key: bytes, partition_count: int) -> int:
    """The partition (0 to `partition_count` - 1) aiokafka's DefaultPartitioner sends the key to."""
    # DefaultPartitioner.__call__: murmur2, made positive, modulo the number of partitions.
    index: int = (murmur2(key) & 0x7FFFFFFF) % partition_count
    return index


def _acknowledge(acknowledged: asyncio.Future[None], sent: asyncio.Future[Any]) -> None:
    if sent.cancelled():
        _settle(acknowledged, KafkaError("the batch was cancelled before Kafka acknowledged it"))
    elif (failure := sent.exception()) is not None:
        _settle(acknowledged, failure)
    elif not acknowledged.done():
        acknowledged.set_result(None)


def _settle(acknowledged: asyncio.Future[None], failure: BaseException) -> None:
    if not acknowledged.done():
        acknowledged.set_exception(failure)
        # Retrieved here so a batch whose callers all gave up logs no "never retrieved".
        acknowledged.exception()


def _sender_failure(client: AIOKafkaProducer) -> BaseException | None:
    """Why the client's background sender stopped, if it has (aiokafka keeps it in
    `_sender.sender_task`; nothing public says it died)."""
    task = getattr(getattr(client, "_sender", None), "sender_task", None)
    if not isinstance(task, asyncio.Future) or not task.done():
        return None
    if task.cancelled():
        return RuntimeError("the sender was cancelled")
    return task.exception() or RuntimeError("the sender ended")

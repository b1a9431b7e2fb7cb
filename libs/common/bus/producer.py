"""The one Kafka producer a process uses: acks=all, batched sends, CloudEvents binary mode."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from libs.common import metrics
from libs.common.events import Event, encode
from libs.common.events.envelope import Headers
from libs.common.settings import Settings

_log = logging.getLogger(__name__)


class EventProducer:
    """Publishes events and waits for Kafka's acknowledgement of all of them together.

    Sends are queued first and awaited together so aiokafka can batch them (awaiting each
    send in turn defeats batching, aiokafka #1065).
    """

    name = "producer"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: AIOKafkaProducer | None = None
        self._replacing = asyncio.Lock()

    async def start(self) -> None:
        self._client = await self._new_client()

    async def _new_client(self) -> AIOKafkaProducer:
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
        await client.start()
        return client

    async def _working_client(self) -> AIOKafkaProducer:
        """The client, or a new one in its place if its sender died.

        Seen when the broker connection is cut: aiokafka's sender task can die of an error
        from the closed transport ("Unexpected error during batch delivery"), after which every
        send fails with that error for good. Callers retry what failed (the outbox relay keeps
        its rows until they are acknowledged), so replacing the client is all it takes.
        """
        client = self._producer
        failure = _sender_failure(client)
        if failure is None:
            return client
        async with self._replacing:
            if self._client is not client:  # another send replaced it meanwhile
                return self._producer
            _log.error(
                "the Kafka producer stopped working; starting a new one",
                extra={"error": repr(failure)},
            )
            metrics.PRODUCER_RESTARTS.inc()
            broken, self._client = self._client, None
            if broken is not None:
                with contextlib.suppress(Exception):
                    await broken.stop()
            self._client = await self._new_client()
            return self._client

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.stop()
            self._client = None

    def is_alive(self) -> bool:
        return self._client is not None

    @property
    def _producer(self) -> AIOKafkaProducer:
        if self._client is None:
            raise RuntimeError("the producer is not started")
        return self._client

    async def publish(self, events: Sequence[Event[Any]]) -> None:
        """Publish events in order; returns once Kafka has acknowledged every one of them."""
        acknowledgements = [await self.send(event.topic, *encode(event)) for event in events]
        await self.wait_all(acknowledgements)
        for (topic, event_type), count in Counter((e.topic, e.type) for e in events).items():
            metrics.EVENTS_PRODUCED.labels(topic, event_type).inc(count)

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


def _sender_failure(client: AIOKafkaProducer) -> BaseException | None:
    """Why the client's background sender stopped, if it has (aiokafka keeps it in
    `_sender.sender_task`; nothing public says it died)."""
    task = getattr(getattr(client, "_sender", None), "sender_task", None)
    if not isinstance(task, asyncio.Future) or not task.done():
        return None
    if task.cancelled():
        return RuntimeError("the sender was cancelled")
    return task.exception() or RuntimeError("the sender ended")

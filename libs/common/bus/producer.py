"""The one Kafka producer a process uses: acks=all, batched sends, CloudEvents binary mode."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from libs.common import metrics
from libs.common.events import Event, encode
from libs.common.events.envelope import Headers
from libs.common.settings import Settings


class EventProducer:
    """Publishes events and waits for Kafka's acknowledgement of all of them together.

    Sends are queued first and awaited together so aiokafka can batch them (awaiting each
    send in turn defeats batching, aiokafka #1065).
    """

    name = "producer"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: AIOKafkaProducer | None = None

    async def start(self) -> None:
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
        self._client = client

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
        future: asyncio.Future[Any] = await self._producer.send(
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

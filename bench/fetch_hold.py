"""How long a message waits at the broker for a consumer's fetch: the floor of every loop hop.

`python -m bench.fetch_hold` sends single messages at random moments to a topic that one
consumer polls, and prints, per `fetch_max_wait_ms`, the time from the broker's
acknowledgement of a message to the consumer's poll returning it. Apache Kafka answers a
waiting fetch as soon as data arrives (`fetch_min_bytes` is 1), so there it is a millisecond
or two whatever the wait; a broker that holds fetches adds up to the wait to each hop.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.report import percentile
from libs.common.bus import ensure_topics
from libs.devstack.scratch import scratch_stack

WAITS_MS = (25, 100, 500)
_GAP_SECONDS = (0.05, 0.4)  # between two messages, at random: no phase lock with the fetches
_POLL_TIMEOUT_MS = 5_000


@dataclass(frozen=True)
class FetchHold:
    """Acknowledged → returned by a poll, in ms, for messages sent one at a time."""

    fetch_max_wait_ms: int
    delays_ms: Sequence[float]

    def share(self, share: float) -> float:
        return percentile(sorted(self.delays_ms), share)


async def measure(bootstrap: str, fetch_max_wait_ms: int, messages: int) -> FetchHold:
    topic = f"bench.fetch-hold.{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [topic], 1, 1)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-{topic}",
        fetch_max_wait_ms=fetch_max_wait_ms,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await consumer.start()
    await producer.start()
    try:
        await _first_returned(producer, consumer, topic)  # the group has joined
        delays = [await _one_hop(producer, consumer, topic) for _ in range(messages)]
    finally:
        await producer.stop()
        await consumer.stop()
    return FetchHold(fetch_max_wait_ms, delays)


async def _first_returned(
    producer: AIOKafkaProducer, consumer: AIOKafkaConsumer, topic: str
) -> None:
    await producer.send_and_wait(topic, b"first")
    await _polled(consumer)


async def _one_hop(producer: AIOKafkaProducer, consumer: AIOKafkaConsumer, topic: str) -> float:
    await asyncio.sleep(random.uniform(*_GAP_SECONDS))  # while the consumer's fetch waits
    await producer.send_and_wait(topic, b"x")
    acknowledged = time.perf_counter()
    await _polled(consumer)
    return (time.perf_counter() - acknowledged) * 1000


async def _polled(consumer: AIOKafkaConsumer) -> None:
    """Poll until a message comes back; a lost one fails after the poll's own deadline."""
    deadline = time.monotonic() + _POLL_TIMEOUT_MS / 1000 * 3
    while time.monotonic() < deadline:
        if await consumer.getmany(timeout_ms=_POLL_TIMEOUT_MS):
            return
    raise TimeoutError("a message sent was not returned by a poll")


def report(holds: Sequence[FetchHold]) -> None:
    print("Broker fetch hold: acknowledged → returned by a consumer's poll, one message at a time")
    for hold in holds:
        print(
            f"  fetch_max_wait_ms {hold.fetch_max_wait_ms:>4}: p50 {hold.share(0.5):6.1f} ms, "
            f"p99 {hold.share(0.99):6.1f} ms, max {max(hold.delays_ms):6.1f} ms "
            f"({len(hold.delays_ms)} messages)"
        )


async def _main(messages: int) -> None:
    async with scratch_stack("closeloop-bench-") as (broker, _):
        report([await measure(broker.bootstrap, wait, messages) for wait in WAITS_MS])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.fetch_hold", description=__doc__)
    parser.add_argument("--messages", type=int, default=50, help="per fetch_max_wait_ms")
    asyncio.run(_main(parser.parse_args().messages))

"""When aiokafka's background tasks die, the consumer and the producer replace their clients.

Seen in the fault-injection suite: cutting the broker connection can kill aiokafka's fetch loop
(nothing is fetched again while the consumer still looks alive) or its sender (every later send
fails with "Unexpected error during batch delivery"), each with an error from the closed
transport; and errors outside the handler (an offset commit on the cut connection, the group
coordinator's RuntimeError raised by `getmany`) ended the consumer's own task. Here each is
made to fail the same way, by an error raised inside it, on the real broker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from aiokafka.errors import KafkaConnectionError, KafkaError

from libs.common.bus import Batch, EventConsumer, EventProducer
from libs.common.events import Event
from libs.common.events.behavior import BehaviorOccurred
from libs.devstack import free_port
from libs.devstack.stack import Stack
from tests.events import behaviour
from tests.integration.support import ThrowawayBus as Bus
from tests.integration.support import consuming, publish, throwaway_bus, wait_for

pytestmark = pytest.mark.integration


@dataclass
class Seen:
    ids: set[str] = field(default_factory=set)
    handled: Counter[str] = field(default_factory=Counter)

    async def handle(self, batch: Batch) -> None:
        self.ids.update(event.id for event in batch.events)
        self.handled.update(event.id for event in batch.events)


@pytest_asyncio.fixture(loop_scope="session")
async def bus(stack: Stack) -> AsyncIterator[Bus]:
    async with throwaway_bus(stack.kafka_bootstrap, stack.database_url, "fetcher") as created:
        yield created


def _behaviour() -> Event[BehaviorOccurred]:
    return behaviour("prf_fetcher")


@contextlib.asynccontextmanager
async def _consuming(bus: Bus, **settings: Any) -> AsyncIterator[tuple[Seen, EventConsumer]]:
    """A consumer of the bus's topic (and its producer), started, and what its handler saw."""
    seen = Seen()
    async with consuming(bus, seen.handle, **settings) as consumer:
        yield seen, consumer


async def _handled(stack: Stack, bus: Bus, seen: Seen, what: str) -> Event[BehaviorOccurred]:
    """A new event published to the bus's topic, once the consumer has handled it."""
    event = _behaviour()
    await publish(stack.kafka_bootstrap, [event], topic=bus.topic)
    await wait_for(lambda: _has(seen, event), within=60, what=what)
    return event


async def _consumes_again(
    stack: Stack, bus: Bus, seen: Seen, consumer: EventConsumer, broken: Any
) -> Event[BehaviorOccurred]:
    """After the client broke: the consumer holds a new client, and the next event is handled.

    The replacement is awaited first: an event published at once may still be handed over by
    the broken client's poll in flight, and only its next poll meets the failure."""
    await wait_for(lambda: _replaced(consumer, broken), within=60, what="a new Kafka client")
    event = await _handled(stack, bus, seen, "an event after the failure")
    assert consumer.is_alive()
    return event


async def _replaced(consumer: EventConsumer, broken: Any) -> bool:
    return consumer._consumer not in (None, broken)


async def _has(seen: Seen, event: Event[BehaviorOccurred]) -> bool:
    return event.id in seen.ids


async def test_a_consumer_whose_fetch_loop_died_is_replaced_and_consumes_again(
    stack: Stack, bus: Bus
) -> None:
    async with _consuming(bus) as (seen, consumer):
        await _handled(stack, bus, seen, "the first event handled")
        broken = consumer._client

        def transport_closed(*_: object) -> None:
            # What the fetch loop met when the broker was cut, raised at its next round.
            raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")

        broken._fetcher._get_actions_per_node = transport_closed
        await _consumes_again(stack, bus, seen, consumer, broken)


async def test_a_batch_whose_offset_commit_fails_does_not_end_the_consumer(
    stack: Stack, bus: Bus
) -> None:
    async with _consuming(bus) as (seen, consumer):
        broken = consumer._client
        commit = broken.commit
        failed: list[object] = []

        async def commit_on_a_cut_connection(offsets: object = None) -> None:
            if not failed:  # the first commit meets the cut; the client's own retries gave up
                failed.append(offsets)
                raise KafkaConnectionError("Connection at 127.0.0.1:9092 closed")
            await commit(offsets)

        broken.commit = commit_on_a_cut_connection
        first = await _handled(stack, bus, seen, "the first event handled")
        await wait_for(_commit_failed(failed), within=30, what="the failing offset commit")
        after = await _consumes_again(stack, bus, seen, consumer, broken)
        # The first batch came again from the committed offsets; the inbox kept it from the
        # handler the second time.
        assert seen.handled[first.id] == 1
        assert seen.handled[after.id] == 1


def _commit_failed(failed: list[object]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(failed)

    return check


def _fail_coordinator(client: Any) -> None:
    """What the coordinator handed `getmany` when the broker was cut: a RuntimeError, not a
    KafkaError, from the closed transport."""
    client._coordinator._pending_exception = RuntimeError(
        "unable to perform operation on <TCPTransport closed=True>; the handler is closed"
    )


async def test_a_consumer_whose_group_coordinator_failed_is_replaced_and_consumes_again(
    stack: Stack, bus: Bus
) -> None:
    async with _consuming(bus) as (seen, consumer):
        before = await _handled(stack, bus, seen, "the first event handled")
        broken = consumer._client
        _fail_coordinator(broken)
        await _consumes_again(stack, bus, seen, consumer, broken)
        assert seen.handled[before.id] == 1


async def test_a_consumer_whose_group_coordination_ended_is_replaced_and_consumes_again(
    stack: Stack, bus: Bus
) -> None:
    async with _consuming(bus) as (seen, consumer):
        await _handled(stack, bus, seen, "the first event handled")
        broken = consumer._client
        # "Unexpected error in coordinator routine": the routine's task ends with the error.
        ended = asyncio.get_running_loop().create_future()
        ended.set_exception(RuntimeError("unable to perform operation on a closed transport"))
        broken._coordinator._coordination_task = ended
        await _consumes_again(stack, bus, seen, consumer, broken)


async def test_a_broken_client_whose_stop_raises_cancelled_error_is_still_replaced(
    stack: Stack, bus: Bus
) -> None:
    """Seen in a clean-clone CI run: aiokafka's `Fetcher.close()` awaits a fetch task it has
    just cancelled, so stopping a broken client raised CancelledError, which ended the
    consumer's task as if the consumer itself had been cancelled (`/healthz`: dead worker)."""
    async with _consuming(bus) as (seen, consumer):
        await _handled(stack, bus, seen, "the first event handled")
        broken = consumer._client
        stop = broken.stop

        async def stop_like_a_closing_fetcher() -> None:
            await stop()
            raise asyncio.CancelledError  # what `await x` on the cancelled fetch task raised

        broken.stop = stop_like_a_closing_fetcher
        _fail_coordinator(broken)
        await _consumes_again(stack, bus, seen, consumer, broken)


async def test_a_poll_waiting_for_an_assignment_that_never_comes_gives_the_client_up(
    stack: Stack, bus: Bus
) -> None:
    """Suspected in a fault-injection run: after a broker cut during a rejoin a consumer never
    polled again, and logged nothing. aiokafka's `getmany` waits without a bound for the next
    assignment while its subscription says a rebalance is in progress; here the subscription
    says so, and the coordinator, which was not asked to rejoin, never finishes one."""
    async with _consuming(bus, kafka_poll_deadline_ms=15_000) as (seen, consumer):
        first = await _handled(stack, bus, seen, "the first event handled")
        broken = consumer._client
        broken._subscription.subscription._reassignment_in_progress = True
        after = await _consumes_again(stack, bus, seen, consumer, broken)
        assert seen.handled[first.id] == 1
        assert seen.handled[after.id] == 1


async def test_a_group_join_slower_than_the_poll_deadline_still_completes(
    stack: Stack, bus: Bus
) -> None:
    """Joining the group takes the embedded broker a few seconds, more than this deadline: each
    overdue poll doubles the next one's, so the consumer joins rather than give up each try."""
    async with _consuming(bus, kafka_poll_deadline_ms=1000) as (seen, consumer):
        event = await _handled(stack, bus, seen, "an event, once the consumer joined")
        assert seen.handled[event.id] == 1
        assert consumer._overdue_polls == 0


async def test_an_offset_commit_that_never_returns_gives_the_client_up(
    stack: Stack, bus: Bus
) -> None:
    async with _consuming(bus, kafka_commit_timeout_ms=1000) as (seen, consumer):
        broken = consumer._client
        commit = broken.commit
        hung: list[object] = []

        async def commit_that_hangs(offsets: object = None) -> None:
            if not hung:  # aiokafka retrying a coordinator that will never answer
                hung.append(offsets)
                await asyncio.get_running_loop().create_future()
            await commit(offsets)

        broken.commit = commit_that_hangs
        first = await _handled(stack, bus, seen, "the first event handled")
        after = await _handled(stack, bus, seen, "an event after the hung commit")
        assert hung
        assert await _replaced(consumer, broken)
        assert seen.handled[first.id] == 1
        assert seen.handled[after.id] == 1


@contextlib.asynccontextmanager
async def _producing(bus: Bus) -> AsyncIterator[EventProducer]:
    producer = EventProducer(bus.settings)
    await producer.start()
    try:
        await producer.publish([_behaviour()])
        yield producer
    finally:
        await producer.stop()


async def _kill_sender(producer: EventProducer) -> None:
    """Kill the client's sender as the broker cut did; the send it died on fails."""

    async def transport_closed(*_: object) -> None:
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")

    client = producer._producer
    client._sender._send_produce_req = transport_closed
    with pytest.raises(KafkaError):  # its caller (the outbox relay) retries
        await producer.publish([_behaviour()])
    await wait_for(lambda: _sender_dead(client), within=30, what="the sender task to have died")


async def test_a_producer_whose_sender_died_is_replaced_and_publishes_again(
    stack: Stack, bus: Bus
) -> None:
    async with _producing(bus) as producer:
        broken = producer._producer
        await _kill_sender(producer)
        await producer.publish([_behaviour()])  # a new client; acknowledged
        assert producer._producer is not broken


async def test_a_producer_whose_replacement_could_not_start_tries_again_on_the_next_publish(
    stack: Stack, bus: Bus
) -> None:
    """The sender dies when the broker connection is cut, and the broker may still be away
    when the next publish replaces the client: that publish fails, and the producer must not
    stay without a client (every later publish then failed with "not started")."""
    async with _producing(bus) as producer:
        await _kill_sender(producer)
        reachable = producer._settings
        producer._settings = reachable.model_copy(
            update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"}  # nothing listens there
        )
        with pytest.raises(KafkaConnectionError):
            await producer.publish([_behaviour()])
        assert producer.is_alive()  # waiting for the broker, not a process to restart
        producer._settings = reachable  # the broker is back
        async with asyncio.timeout(30):
            await producer.publish([_behaviour()])


async def test_a_dead_producer_whose_stop_never_returns_is_given_up(stack: Stack, bus: Bus) -> None:
    async with _producing(bus) as producer:
        broken = producer._producer
        stopping: list[bool] = []

        async def stop_that_hangs() -> None:
            stopping.append(True)  # aiokafka waiting on a connection that will never answer
            await asyncio.get_running_loop().create_future()

        broken.stop = stop_that_hangs
        await _kill_sender(producer)
        async with asyncio.timeout(30):  # the old client's stop is given up after 5 s
            await producer.publish([_behaviour()])
        assert stopping
        assert producer._producer is not broken


async def _sender_dead(client: Any) -> bool:
    return bool(client._sender.sender_task.done())

"""The bus against its raw ceilings: consume → handle → commit with inbox and outbox.

Prints, from one run on this machine: plain aiokafka produce and consume rates, plain asyncpg
inbox-shaped batched inserts, and the bus's rate with a trivial handler that emits one event per
input, a copy of it (inbox + outbox); then the ratio of the bus to the slower raw ceiling.

Beside them, the stack's floor: plain aiokafka consuming the same events and doing only what no
consumer on this stack can skip, each value validated by its pydantic model and the emitted
copy's value serialised by it. What the bus spends beyond the floor, per event, is its own
envelope, inbox, outbox and transaction; what the target leaves for them is printed beside it.
The outbox relay's publishing is measured on its own afterwards, against the raw produce rate:
both compete for the same two cores when they run together, which would hide which is slow.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from aiokafka import ConsumerRecord
from sqlalchemy import text

from bench import raw
from bench.clock import FirstBatchClock, garbage_collected_as_in_services
from bench.progress import PROGRESS
from bench.raw import Ceilings
from bench.report import Rate, Ratio, print_table, save
from bench.summary import Figure, Target
from libs.common.bus import Batch, EventConsumer, EventProducer, OutboxRelay, ensure_topics
from libs.common.bus.tables import create_bus_schema
from libs.common.db import create_engine
from libs.common.events import Event, encode
from libs.common.events.behavior import BehaviorOccurred
from libs.common.events.envelope import event_value
from libs.common.settings import Settings

TARGET_RATIO = 0.5
FLOOR = "the stack's floor (consume, validate, serialise)"


def behaviours(count: int, profiles: int = 1000) -> list[Event[BehaviorOccurred]]:
    now = datetime.now(UTC)
    return [
        Event(
            data=BehaviorOccurred(
                profile_id=f"prf_{i % profiles}",
                event="product_viewed",
                kind="track",
                properties={"sku": f"SKU-{i % 97}", "price": 19.9},
                occurred_at=now,
                received_at=now,
                message_id=f"msg-{i}",
            ),
            key=f"prf_{i % profiles}",
            source="closeloop/bench",
        )
        for i in range(count)
    ]


async def ceilings(bootstrap: str, dsn: str, count: int) -> Ceilings:
    """The raw ceilings on `count` of these events: produce, consume + commit, inbox rows."""
    run_id = uuid.uuid4().hex[:8]
    topic = f"bench.raw.{run_id}"
    await ensure_topics(bootstrap, [topic], 12, 1)
    messages = [encode(event) for event in behaviours(count)]
    PROGRESS.note("raw produce")
    produced = await raw.produce(bootstrap, topic, messages)
    PROGRESS.note("raw consume + commit")
    consumed = await raw.consume(bootstrap, topic, count, f"bench-raw-{run_id}")
    PROGRESS.note("raw inbox inserts")
    inserted = await raw.inbox_inserts(dsn, count, 500)
    return Ceilings(produced, consumed, inserted)


async def run(bootstrap: str, database_url: str, dsn: str, count: int) -> list[Rate]:
    """The raw ceilings, then the bus on the same events; the ceilings are the first three."""
    measured = await ceilings(bootstrap, dsn, count)
    run_id = uuid.uuid4().hex[:8]
    topic = f"bench.bus.{run_id}"
    await ensure_topics(bootstrap, [topic, "closeloop.profile.v1"], 12, 1)
    await raw.produce(bootstrap, topic, [encode(event) for event in behaviours(count)])
    PROGRESS.note("the stack's floor")
    floor = await raw.consume(
        bootstrap, topic, count, f"bench-floor-{run_id}", work=validate_and_serialise, name=FLOOR
    )
    bus = await _bus_rates(bootstrap, database_url, topic, count, run_id)
    return [measured.produce, measured.consume, measured.inserts, floor, *bus]


def validate_and_serialise(records: list[ConsumerRecord[bytes, bytes]]) -> None:
    """What no consumer on this stack can skip per event: its data validated by the event's
    pydantic model, and the data of the event it emits (a copy here, as the bus's handler
    makes) serialised by it. Everything else the bus does is its own cost."""
    for record in records:
        event_value(BehaviorOccurred.model_validate_json(record.value or b""))


def ceilings_of(rates: list[Rate]) -> Ceilings:
    """The ceilings a bus run measured first."""
    produced, consumed, inserted, *_ = rates
    return Ceilings(produced, consumed, inserted)


async def _bus_rates(
    bootstrap: str, database_url: str, topic: str, count: int, run_id: str
) -> list[Rate]:
    settings = Settings(
        service_name=f"bench_{run_id}",
        kafka_bootstrap=bootstrap,
        kafka_idempotence=False,
        database_url=database_url,
    )
    engine = create_engine(settings)
    await create_bus_schema(engine, settings.schema_name)
    producer = EventProducer(settings)
    relay = OutboxRelay(engine, producer, settings.schema_name)

    async def emit_one_per_event(batch: Batch) -> None:
        for event in batch.events:
            batch.emit(Event(data=event.data, key=event.key, source="closeloop/bench"), cause=event)

    clock = FirstBatchClock(emit_one_per_event, count)
    consumer = EventConsumer(
        settings,
        topics=[topic],
        handler=clock,
        engine=engine,
        producer=producer,
        relay=relay,
    )
    await producer.start()
    try:
        with garbage_collected_as_in_services():
            await consumer.start()
            seconds = await clock.seconds()
            relay_started = time.perf_counter()
            await relay.drain()
            relay_seconds = time.perf_counter() - relay_started
    finally:
        await consumer.stop()
        await producer.stop()
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP SCHEMA {settings.schema_name} CASCADE"))
        await engine.dispose()
    return [
        Rate("bus consume→handle→commit (inbox + outbox write)", count, seconds),
        Rate("bus outbox relay publish (acks=all)", count, relay_seconds),
    ]


def ratios(rates: list[Rate]) -> list[Ratio]:
    produced, consumed, inserted, floor, bus, relay = rates
    ceiling = min(consumed.per_second, inserted.per_second)
    return [
        Ratio("bus / min(raw consume, raw inbox inserts)", bus.per_second / ceiling, TARGET_RATIO),
        Ratio("the stack's floor / the same ceiling", floor.per_second / ceiling, TARGET_RATIO),
        Ratio("outbox relay / raw produce", relay.per_second / produced.per_second, TARGET_RATIO),
    ]


def beyond_the_floor(rates: list[Rate]) -> tuple[float, float]:
    """(µs an event the bus spends beyond the stack's floor, µs an event the target leaves for
    that): the bus's own envelope, inbox, outbox and transaction, against their budget."""
    _, consumed, inserted, floor, bus, _ = rates
    ceiling = min(consumed.per_second, inserted.per_second)
    floor_us = 1e6 / floor.per_second
    return 1e6 / bus.per_second - floor_us, 1e6 / (TARGET_RATIO * ceiling) - floor_us


def report(rates: list[Rate]) -> None:
    computed = ratios(rates)
    print_table("Bus throughput", rates, computed)
    spent, budget = beyond_the_floor(rates)
    print(
        f"beyond the stack's floor, the bus spends {spent:.1f} µs an event on its envelope, "
        f"inbox, outbox and transaction; a ratio of {TARGET_RATIO} leaves {budget:.1f} µs"
    )
    print(f"results: {save('bus', rates, computed)}")


def figures(rates: list[Rate], _: Ceilings) -> list[Figure]:
    """The raw ceilings themselves, the stack's floor, then the bus and its relay against them."""
    produced, consumed, inserted, floor, bus, relay = rates
    spent, budget = beyond_the_floor(rates)
    measured = Ceilings(produced, consumed, inserted)
    ratio = (Target(TARGET_RATIO, on="ratio"),)
    return [
        Figure("raw", "aiokafka produce (acks=all)", produced.per_second, "events/s"),
        Figure("raw", "aiokafka consume + commit", consumed.per_second, "events/s"),
        Figure("raw", "asyncpg inbox inserts, 500/tx", inserted.per_second, "rows/s"),
        Figure(
            "bus",
            FLOOR,
            floor.per_second,
            "events/s",
            "min raw consume/inbox",
            measured.consumer.per_second,
        ),
        Figure(
            "bus",
            "consume→handle→commit (inbox + outbox)",
            bus.per_second,
            "events/s",
            "min raw consume/inbox",
            measured.consumer.per_second,
            ratio,
        ),
        Figure("bus", "µs an event beyond the floor (envelope, inbox, outbox, tx)", spent, "µs"),
        Figure("bus", "µs an event a ratio of 0.5 leaves beyond the floor", budget, "µs"),
        Figure(
            "bus",
            "outbox relay publish",
            relay.per_second,
            "events/s",
            "raw produce",
            produced.per_second,
            ratio,
        ),
    ]

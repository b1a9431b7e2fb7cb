"""Real-time segment evaluation with 100 active segments, as the segment service consumes.

100 segments are stored first (event counts within windows, with and without property
filters, combined with traits and tags: each behaviour's event is read by ten of them, a plan
change by twenty). Then behaviours and profile changes for 2,000 people (nine in ten
behaviours, one in ten a change of plan or tags) are published to a fresh topic, and the
segment service's own consumer and handler run on it in this process, as profile's benchmark
does, timed from the first batch to the last commit. The figures: events evaluated per second
and the segment.entered/exited transitions they emitted.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import services.segment
from bench import raw
from bench.clock import FirstBatchClock, garbage_collected_as_in_services
from bench.raw import Ceilings
from bench.report import Rate, print_table, save
from bench.summary import Figure
from libs.common.bus import Batch, BatchHandler, EventConsumer, EventProducer, ensure_topics
from libs.common.db import create_engine, create_sessions, upgrade
from libs.common.events import BehaviorOccurred, Event, ProfileUpdated, encode
from libs.common.events.profile import ProfileChange
from services.segment.handlers import ACCEPTED_TYPES, segment_handler
from services.segment.rules import SegmentRule, references
from services.segment.settings import SegmentSettings
from services.segment.store import SegmentStore

SEGMENTS = 100
PEOPLE = 2_000
_MIGRATIONS = Path(services.segment.__file__).parent / "migrations"
_EVENTS = (
    "product_viewed",
    "added_to_cart",
    "order_completed",
    "page_viewed",
    "searched",
    "wishlist_added",
    "review_written",
    "coupon_used",
    "support_contacted",
    "app_opened",
)
_CATEGORIES = ("tea", "teaware", "snacks", "gifts")
_PLANS = ("basic", "premium")


def definitions() -> dict[str, Any]:
    """`SEGMENTS` conditions by segment id, in five shapes over the ten event names."""
    conditions: dict[str, Any] = {}
    for index in range(SEGMENTS):
        event = _EVENTS[index % len(_EVENTS)]
        threshold = 1 + index // 20
        shape = index // len(_EVENTS) % 5
        within: dict[str, Any] = {"event": event, "count": {"gte": threshold}, "within": "P7D"}
        if shape == 1:
            within = {**within, "within": "P30D", "count": {"gte": threshold + 2}}
        elif shape == 2:
            within = {"all": [{"trait": "plan", "op": "eq", "value": "premium"}, within]}
        elif shape == 3:
            category = _CATEGORIES[index % len(_CATEGORIES)]
            where = [{"property": "category", "op": "eq", "value": category}]
            within = {**within, "where": where}
        elif shape == 4:
            within = {"all": [{"not": {"tag": "churned"}}, within]}
        conditions[f"seg_rt_{index:03d}"] = within
    return conditions


def stream(count: int, run_id: str) -> list[Event[Any]]:
    """Behaviours of `PEOPLE` people over the last hour; every tenth event a profile change."""
    now = datetime.now(UTC)
    events: list[Event[Any]] = []
    for i in range(count):
        profile_id = f"prf_{run_id}_{i % PEOPLE}"
        occurred_at = now - timedelta(seconds=(count - i) * 3600 / count)
        data: BehaviorOccurred | ProfileUpdated
        if i % 10 == 9:
            data = ProfileUpdated(
                profile_id=profile_id, changes=[_change(i)], occurred_at=occurred_at
            )
        else:
            data = BehaviorOccurred(
                profile_id=profile_id,
                event=_EVENTS[(i // PEOPLE + i) % len(_EVENTS)],
                kind="track",
                properties={"category": _CATEGORIES[i % len(_CATEGORIES)], "price": 19.9},
                occurred_at=occurred_at,
                received_at=now,
                message_id=f"{run_id}-{i}",
            )
        events.append(Event(data=data, key=profile_id, source="closeloop/bench"))
    return events


def _change(i: int) -> ProfileChange:
    """A plan that flips, or tags that gain or lose `vip` and `churned`."""
    if i % 20 == 9:
        before, after = _PLANS[i % 2], _PLANS[(i + 1) % 2]
        return ProfileChange(field="traits.plan", before=before, after=after)
    tags = ["vip"] if i % 40 == 19 else ["churned"]
    return ProfileChange(field="tags", before=[], after=tags)


class _TransitionCount:
    """Counts what the handler emits: one segment.entered or segment.exited per transition."""

    def __init__(self, handler: BatchHandler) -> None:
        self._handler = handler
        self.emitted = 0

    async def __call__(self, batch: Batch) -> None:
        await self._handler(batch)
        self.emitted += len(batch.emitted)


async def run(bootstrap: str, database_url: str, dsn: str, count: int) -> list[Rate]:
    run_id = uuid.uuid4().hex[:8]
    topic = f"bench.segment.{run_id}"
    await ensure_topics(bootstrap, [topic], 12, 1)
    await raw.produce(bootstrap, topic, [encode(event) for event in stream(count, run_id)])
    settings = SegmentSettings(
        service_name=f"bench_segment_rt_{run_id}",
        kafka_bootstrap=bootstrap,
        kafka_idempotence=False,
        database_url=database_url,
    )
    await asyncio.to_thread(upgrade, settings, _MIGRATIONS)
    engine = create_engine(settings)
    try:
        await _store_segments(engine, settings.schema_name)
        transitions = _TransitionCount(segment_handler(settings.schema_name))
        seconds = await _evaluation_seconds(settings, engine, topic, count, transitions)
    finally:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP SCHEMA {settings.schema_name} CASCADE"))
        await engine.dispose()
    return [
        Rate(f"real-time evaluation, {SEGMENTS} segments: events", count, seconds),
        Rate("real-time evaluation: transitions emitted", transitions.emitted, seconds),
    ]


async def _store_segments(engine: AsyncEngine, schema: str) -> None:
    async with create_sessions(engine)() as session, session.begin():
        store = SegmentStore(session, schema)
        for segment_id, conditions in definitions().items():
            refs = references(SegmentRule.parse(segment_id, 1, conditions).condition)
            await store.insert_segment(segment_id, segment_id, "", conditions, refs)


async def _evaluation_seconds(
    settings: SegmentSettings, engine: AsyncEngine, topic: str, count: int, handler: BatchHandler
) -> float:
    producer = EventProducer(settings)
    clock = FirstBatchClock(handler, count)
    consumer = EventConsumer(
        settings,
        topics=[topic],
        handler=clock,
        engine=engine,
        producer=producer,
        accept_types=ACCEPTED_TYPES,
    )
    await producer.start()
    try:
        with garbage_collected_as_in_services():
            await consumer.start()
            return await clock.seconds()
    finally:
        await consumer.stop()
        await producer.stop()


def report(rates: list[Rate]) -> None:
    print_table(f"Segment real-time evaluation ({SEGMENTS} active segments)", rates, [])
    print(f"results: {save('segment_realtime', rates, [])}")


def figures(rates: list[Rate], ceilings: Ceilings) -> list[Figure]:
    """No target of its own; set beside what any consumer pays at least."""
    evaluated, transitions = rates
    scenario = f"segment real-time ({SEGMENTS} segments)"
    return [
        Figure(
            scenario,
            "behaviours + profile changes evaluated",
            evaluated.per_second,
            "events/s",
            "min raw consume/inbox",
            ceilings.consumer.per_second,
        ),
        Figure(scenario, "segment.entered/exited emitted", transitions.per_second, "events/s"),
    ]

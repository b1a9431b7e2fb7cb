"""The profile service's processing rate: ingest calls in, committed profile state and events out.

Publishes a mix of track, page and identify calls for 1,000 people (each seen first
anonymously, then identified, so merges happen too) to a fresh topic, then runs the profile
service's own consumer and handler on it, as the service does, and times from the first batch
to the last committed one. The outbox relay is not running: its rate is the bus benchmark's.
"""

from __future__ import annotations

import asyncio
import gc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench import raw
from bench.clock import FirstBatchClock
from bench.raw import Ceilings
from bench.report import Rate, Ratio, print_table, save
from bench.summary import Figure, Target
from libs.common.app import settle_garbage_collector
from libs.common.bus import EventConsumer, EventProducer, ensure_topics
from libs.common.db import create_engine, upgrade
from libs.common.events import Event, IngestIdentify, IngestPage, IngestTrack, encode
from services.profile.handlers import ACCEPTED_TYPES, profile_handler
from services.profile.settings import ProfileSettings

TARGET_EVENTS_PER_SECOND = 20_000
_MIGRATIONS = Path(__file__).parents[1] / "services" / "profile" / "migrations"
_CATEGORIES = ("tea", "teaware", "snacks", "gifts")


def ingest_calls(count: int, run_id: str, people: int = 1000) -> list[Event[Any]]:
    """Per person: pages as an anonymous visitor, then identify, then tracks and orders."""
    start = datetime.now(UTC) - timedelta(days=3)
    events: list[Event[Any]] = []
    for i in range(count):
        person = i % people
        round_ = i // people
        user_id, anonymous_id = f"{run_id}-u{person}", f"{run_id}-a{person}"
        times = {"timestamp": start + timedelta(seconds=i), "receivedAt": datetime.now(UTC)}
        common = {"messageId": f"{run_id}-{i}", "sourceId": "src_bench", **times}
        call: IngestTrack | IngestIdentify | IngestPage
        if round_ < 2:
            category = _CATEGORIES[(person + round_) % len(_CATEGORIES)]
            call = IngestPage(anonymousId=anonymous_id, properties={"category": category}, **common)
        elif round_ == 2 or round_ % 10 == 0:
            traits = {"email": f"{user_id}@example.com", "plan": f"plan-{round_ % 3}"}
            call = IngestIdentify(userId=user_id, anonymousId=anonymous_id, traits=traits, **common)
        elif round_ % 5 == 0:
            call = IngestTrack(
                userId=user_id, event="order_completed", properties={"revenue": 42.0}, **common
            )
        else:
            viewed = {"sku": f"SKU-{i % 97}", "category": _CATEGORIES[i % len(_CATEGORIES)]}
            call = IngestTrack(userId=user_id, event="product_viewed", properties=viewed, **common)
        key = call.user_id or call.anonymous_id or ""
        events.append(Event(data=call, key=key, source="closeloop/bench", id=call.message_id))
    return events


async def run(bootstrap: str, database_url: str, dsn: str, count: int) -> list[Rate]:
    run_id = uuid.uuid4().hex[:8]
    topic = f"bench.profile.{run_id}"
    await ensure_topics(bootstrap, [topic], 12, 1)
    await raw.produce(bootstrap, topic, [encode(event) for event in ingest_calls(count, run_id)])
    settings = ProfileSettings(
        service_name=f"bench_profile_{run_id}",
        kafka_bootstrap=bootstrap,
        kafka_idempotence=False,
        database_url=database_url,
    )
    await asyncio.to_thread(upgrade, settings, _MIGRATIONS)
    seconds = await _processing_seconds(settings, topic, count)
    return [Rate("profile ingest → committed profile state + outbox", count, seconds)]


async def _processing_seconds(settings: ProfileSettings, topic: str, count: int) -> float:
    engine = create_engine(settings)
    producer = EventProducer(settings)
    clock = FirstBatchClock(profile_handler(settings), count)

    consumer = EventConsumer(
        settings,
        topics=[topic],
        handler=clock,
        engine=engine,
        producer=producer,
        accept_types=ACCEPTED_TYPES,
    )

    await producer.start()
    thresholds = gc.get_threshold()
    settle_garbage_collector()  # as the services do after start-up
    await consumer.start()
    try:
        return await clock.seconds()
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        await consumer.stop()
        await producer.stop()
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP SCHEMA {settings.schema_name} CASCADE"))
        await engine.dispose()


def ratios(rates: list[Rate]) -> list[Ratio]:
    (processing,) = rates
    return [
        Ratio(
            f"profile events/s / {TARGET_EVENTS_PER_SECOND:,}",
            processing.per_second / TARGET_EVENTS_PER_SECOND,
            1.0,
        )
    ]


def report(rates: list[Rate]) -> None:
    computed = ratios(rates)
    print_table("Profile throughput", rates, computed)
    print(f"results: {save('profile', rates, computed)}")


def figures(rates: list[Rate], ceilings: Ceilings) -> list[Figure]:
    """Profile's rate against what any consumer pays at least: raw consume and inbox rows."""
    (processing,) = rates
    return [
        Figure(
            "profile",
            "ingest.v1 → committed profile state",
            processing.per_second,
            "events/s",
            "min raw consume/inbox",
            ceilings.consumer.per_second,
            (Target(TARGET_EVENTS_PER_SECOND),),
        )
    ]

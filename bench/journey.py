"""Journey timer throughput: how fast the durable timer worker fires due waits.

A published journey waits a day and then sends a webhook. `count` profiles (the combined run's
`--timers`, 100,000 there) are put straight into journey's tables as runs waiting at that wait,
each with a timer already due, as bench/segment.py does for segment; that is timed apart, as
generation. Then journey's own timer worker (`JourneyTimers.work_due`, with the service's batch
size and step limit) claims them batch by batch in this process until none is due: each fired
timer moves its run on to the send, which writes a message.requested to the outbox in the same
transaction. The outbox relay is not running: its rate is the bus benchmark's.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import services.journey
from bench.progress import PROGRESS
from bench.raw import Ceilings
from bench.report import Rate, print_table, save
from bench.summary import Figure
from libs.common.bus import EventProducer, OutboxRelay
from libs.common.db import create_engine, create_sessions, upgrade
from services.journey.graph import Journey
from services.journey.learning import Policy
from services.journey.settings import JourneySettings
from services.journey.store import JourneyStore
from services.journey.timers import JourneyTimers

_MIGRATIONS = Path(services.journey.__file__).parent / "migrations"
_JOURNEY = "jrn_bench_wait"
_WAIT_THEN_SEND = {
    "entry": {"event": "bench_wait"},
    "start": "pause",
    "nodes": {
        "pause": {"type": "wait", "duration": "P1D", "next": "hook"},
        "hook": {"type": "send", "channel": "webhook", "template_id": "tpl_bench"},
    },
}


async def run(bootstrap: str, database_url: str, dsn: str, count: int) -> list[Rate]:
    settings = JourneySettings(
        service_name=f"bench_journey_{uuid.uuid4().hex[:8]}",
        kafka_bootstrap=bootstrap,
        kafka_idempotence=False,
        database_url=database_url,
    )
    await asyncio.to_thread(upgrade, settings, _MIGRATIONS)
    engine = create_engine(settings)
    try:
        await _publish(engine, settings.schema_name)
        PROGRESS.note(f"inserting {count:,} waiting runs with due timers")
        generated = await _generate(dsn, settings.schema_name, count)
        fired = await _fire_all(engine, settings, count)
        moved_on = await _runs_moved_on(engine, settings.schema_name)
    finally:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP SCHEMA {settings.schema_name} CASCADE"))
        await engine.dispose()
    print(f"journey: {moved_on:,} of {count:,} runs moved on from the wait to the send")
    return [generated, fired, Rate("runs moved on to the send", moved_on, fired.seconds)]


async def _publish(engine: AsyncEngine, schema: str) -> None:
    async with create_sessions(engine)() as session, session.begin():
        store = JourneyStore(session, schema)
        row = await store.insert_journey(_JOURNEY, "wait, then send", "", _WAIT_THEN_SEND)
        assert row is not None
        await store.publish(row, Journey.parse(_JOURNEY, 1, _WAIT_THEN_SEND))


async def _generate(dsn: str, schema: str, count: int) -> Rate:
    """`count` profiles, each with a run waiting at `pause` since a day and a timer due now."""
    connection = await asyncpg.connect(dsn)
    started = time.perf_counter()
    try:
        await connection.execute(
            f"INSERT INTO {schema}.profiles (profile_id) "
            "SELECT 'prf_' || i FROM generate_series(1, $1) AS i",
            count,
        )
        await connection.execute(
            f"INSERT INTO {schema}.runs (journey_id, profile_id, run, version, node_id, status, "
            "entered_at, trigger) SELECT $2, 'prf_' || i, 1, 1, 'pause', 'waiting', "
            "now() - interval '1 day', jsonb_build_object('event_id', 'evt_' || i, "
            "'occurred_at', now() - interval '1 day', 'event', 'bench_wait', "
            "'properties', '{}'::jsonb) FROM generate_series(1, $1) AS i",
            count,
            _JOURNEY,
        )
        await connection.execute(
            f"INSERT INTO {schema}.timers (journey_id, profile_id, run, node_id, due_at) "
            "SELECT $2, 'prf_' || i, 1, 'pause', now() - make_interval(secs => i % 600) "
            "FROM generate_series(1, $1) AS i",
            count,
            _JOURNEY,
        )
        await connection.execute(
            f"ANALYZE {schema}.profiles; ANALYZE {schema}.runs; ANALYZE {schema}.timers"
        )
    finally:
        await connection.close()
    return Rate("due timers generated (profile, run, timer)", count, time.perf_counter() - started)


async def _fire_all(engine: AsyncEngine, settings: JourneySettings, count: int) -> Rate:
    """The worker's own step, one batch after another, until no timer is due."""
    relay = OutboxRelay(engine, EventProducer(settings), settings.schema_name)
    timers = JourneyTimers(
        engine,
        relay,
        settings.schema_name,
        poll_interval_ms=settings.journey_timer_poll_interval_ms,
        batch_size=settings.journey_timer_batch,
        step_limit=settings.journey_step_limit,
        policy=Policy(settings.journey_explore_share),
    )
    claimed = 0
    started = time.perf_counter()
    while fired := await timers.work_due():
        claimed += fired
        PROGRESS.note(f"{claimed:,} of {count:,} timers fired")
    seconds = time.perf_counter() - started
    return Rate(f"timers fired (batches of {settings.journey_timer_batch})", claimed, seconds)


async def _runs_moved_on(engine: AsyncEngine, schema: str) -> int:
    async with engine.connect() as connection:
        # A run that reached the send holds the id of the message.requested it emitted there.
        query = text(f"SELECT count(*) FROM {schema}.runs WHERE requests ->> 'hook' IS NOT NULL")
        moved: int = (await connection.execute(query)).scalar_one()
    return moved


def report(rates: list[Rate]) -> None:
    print_table("Journey timer throughput", rates, [])
    print(f"results: {save('journey', rates, [])}")


def figures(rates: list[Rate], ceilings: Ceilings) -> list[Figure]:
    """No target; the worker is set beside raw batched inserts, the database's pace."""
    generated, fired, moved_on = rates
    scenario = f"journey timers ({generated.count:,} due)"
    return [
        Figure(scenario, "due timers generated", generated.per_second, "/s"),
        Figure(
            scenario,
            "timers fired by the worker",
            fired.per_second,
            "timers/s",
            "raw inbox inserts",
            ceilings.inserts.per_second,
        ),
        Figure(scenario, "runs moved on to the send", moved_on.per_second, "runs/s"),
    ]

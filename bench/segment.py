"""Bulk evaluation of a new segment over generated profiles, as `POST /segments` runs it.

Profiles and their behaviours are inserted straight into segment's tables (timed apart, as
generation); the measured part is the create path's transaction: the compiled INSERT … SELECT
of memberships, the window timers, and one segment.entered per new member written to the
outbox. `count` is the number of profiles (the combined run's `--profiles`, 1,000,000 there).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import services.segment
from bench.progress import PROGRESS
from bench.raw import Ceilings
from bench.report import Rate, print_table, save
from bench.summary import Figure
from libs.common.bus import write_outbox
from libs.common.db import create_engine, create_sessions, upgrade
from libs.common.settings import Settings
from libs.devstack.scratch import scratch_stack
from services.segment.membership import evaluate_in_bulk
from services.segment.rules import SegmentRule
from services.segment.store import SegmentStore

MIGRATIONS = Path(services.segment.__file__).parent / "migrations"
OUTBOX_CHUNK = 1000
REPEAT_TEA_BUYERS = {
    "all": [
        {"trait": "plan", "op": "eq", "value": "premium"},
        {"not": {"tag": "churned"}},
        {
            "event": "order_completed",
            "count": {"gte": 2},
            "within": "P30D",
            "where": [{"property": "category", "op": "eq", "value": "tea"}],
        },
    ]
}


async def run(bootstrap: str, database_url: str, dsn: str, count: int) -> list[Rate]:
    settings = Settings(
        service_name=f"bench_segment_{uuid.uuid4().hex[:8]}",
        kafka_bootstrap=bootstrap,
        database_url=database_url,
    )
    await asyncio.to_thread(upgrade, settings, MIGRATIONS)
    PROGRESS.note(f"generating {count:,} profiles")
    generated = await _generate(dsn, settings.schema_name, count)
    PROGRESS.note(f"evaluating a segment over {count:,} profiles")
    engine = create_engine(settings)
    try:
        return [generated, *await _evaluate(engine, settings.schema_name, count)]
    finally:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP SCHEMA {settings.schema_name} CASCADE"))
        await engine.dispose()


async def _generate(dsn: str, schema: str, count: int) -> Rate:
    """`count` profiles with traits, tags, a score and three orders each over 60 days."""
    connection = await asyncpg.connect(dsn)
    started = time.perf_counter()
    try:
        await connection.execute(
            f"INSERT INTO {schema}.profiles (profile_id, traits, tags, lifecycle_stage, scores) "
            "SELECT 'prf_' || i, jsonb_build_object('plan', CASE WHEN i % 3 = 0 THEN 'basic' "
            "ELSE 'premium' END), CASE WHEN i % 10 = 0 THEN '[\"churned\"]'::jsonb "
            "ELSE '[]'::jsonb END, 'customer', jsonb_build_object('rfm', i % 500) "
            "FROM generate_series(1, $1) AS i",
            count,
        )
        await connection.execute(
            f"INSERT INTO {schema}.behaviours (profile_id, event, occurred_at, properties) "
            "SELECT 'prf_' || i, 'order_completed', "
            "now() - make_interval(days => (i * 7 + n * 13) % 60), "
            "jsonb_build_object('category', CASE WHEN (i + n) % 4 = 0 THEN 'coffee' "
            "ELSE 'tea' END, 'revenue', (i % 200) + 0.5) "
            "FROM generate_series(1, $1) AS i, generate_series(1, 3) AS n",
            count,
        )
        await connection.execute(f"ANALYZE {schema}.profiles; ANALYZE {schema}.behaviours")
    finally:
        await connection.close()
    return Rate("profiles generated (3 behaviours each)", count, time.perf_counter() - started)


async def _evaluate(engine: AsyncEngine, schema: str, count: int) -> list[Rate]:
    sessions = create_sessions(engine)
    rule = SegmentRule.parse("seg_bench", 1, REPEAT_TEA_BUYERS)
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        store = SegmentStore(session, schema)
        started = time.perf_counter()
        preview = await store.count_matching(rule.condition, now)
        previewed = time.perf_counter() - started
    async with sessions() as session, session.begin():
        store = SegmentStore(session, schema)
        started = time.perf_counter()
        changes, events = await evaluate_in_bulk(store, rule, now)
        for start in range(0, len(events), OUTBOX_CHUNK):
            await write_outbox(session, schema, events[start : start + OUTBOX_CHUNK])
    evaluated = time.perf_counter() - started
    print(f"members: {len(changes.entered)} of {count} (preview said {preview})")
    return [
        Rate("preview: profiles counted by the compiled SQL", count, previewed),
        Rate("bulk evaluation: profiles evaluated (create path)", count, evaluated),
        Rate("bulk evaluation: segment.entered written", len(events), evaluated),
    ]


def report(rates: list[Rate]) -> None:
    print_table("Segment bulk evaluation", rates, [])
    print(f"results: {save('segment', rates, [])}")


def figures(rates: list[Rate], ceilings: Ceilings) -> list[Figure]:
    """No target; the evaluation is set beside raw batched inserts, the database's pace."""
    generated, previewed, evaluated, entered = rates
    scenario = f"segment bulk ({evaluated.count:,} profiles)"
    return [
        Figure(scenario, "profiles generated (3 behaviours each)", generated.per_second, "/s"),
        Figure(scenario, "preview: profiles counted", previewed.per_second, "profiles/s"),
        Figure(
            scenario,
            "evaluation (create path): profiles",
            evaluated.per_second,
            "profiles/s",
            "raw inbox inserts",
            ceilings.inserts.per_second,
        ),
        Figure(scenario, "evaluation: segment.entered written", entered.per_second, "events/s"),
        Figure(scenario, "evaluation: seconds in all", evaluated.seconds, "s"),
    ]


async def _main(count: int) -> None:
    async with scratch_stack("closeloop-bench-") as (broker, db):
        report(await run(broker.bootstrap, db.url, db.dsn, count))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.segment", description=__doc__)
    parser.add_argument("--profiles", type=int, default=100_000)
    asyncio.run(_main(parser.parse_args().profiles))

"""The dry run of a journey over 100,000 profiles (issue 22's target: under 10 s).

Segment, dispatch and journey run as processes. `count` profiles (the run's `--dry-run-profiles`,
100,000 by default) are put straight into journey's copy of profiles and its memberships of the
entry segment, a fifth of them with an order in segment's behaviours over the replayed week, and
one in a hundred with email consent withdrawn in dispatch's preferences; that is timed apart, as
generation. The policy caps email at one a day and keeps SMS quiet at night. Then
`POST /journeys/{id}/dry-run {"days": 7}` is timed as a caller sees it: the behaviours asked of
segment, the policy and consent of dispatch, the members read from journey's copy, the replay.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import asyncpg
import httpx

from bench.progress import PROGRESS
from bench.raw import Ceilings
from bench.replicas import replicas
from bench.report import Rate, print_table, save, tree_cpu_seconds
from bench.summary import Figure, Target
from libs.devstack.services import ServiceProcess

TARGET_SECONDS = 10.0
_SEGMENT = "seg_bench_dry"
_JOURNEY = "jrn_bench_dry"
_DAYS = 7
_GRAPH: dict[str, Any] = {
    "entry": {"segment": _SEGMENT},
    "start": "welcome",
    "nodes": {
        "welcome": {"type": "send", "channel": "email", "template_id": "tpl_w", "next": "wait"},
        "wait": {
            "type": "wait_for",
            "event": "order_completed",
            "timeout": "P2D",
            "next": "thanks",
            "timeout_next": "is_vip",
        },
        "is_vip": {
            "type": "branch",
            "branches": [{"condition": {"tag": "vip"}, "next": "vip_sms"}],
            "default": "nudge",
        },
        "vip_sms": {"type": "send", "channel": "sms", "template_id": "tpl_v"},
        "nudge": {"type": "wait", "until": "09:00", "next": "reminder"},
        "reminder": {"type": "send", "channel": "email", "template_id": "tpl_r"},
        "thanks": {"type": "send", "channel": "email", "template_id": "tpl_t"},
    },
}
_POLICY = {
    "caps": [{"channel": "email", "max": 1, "window": "P1D"}],
    "quiet_hours": {"start": "21:00", "end": "08:00", "channels": ["sms"]},
}


async def run(bootstrap: str, database_url: str, dsn: str, count: int) -> list[Rate]:
    env = {
        "CLOSELOOP_KAFKA_BOOTSTRAP": bootstrap,
        "CLOSELOOP_KAFKA_IDEMPOTENCE": "false",
        "CLOSELOOP_DATABASE_URL": database_url,
        "CLOSELOOP_ADMIN_TOKEN": "bench",
    }
    async with _services(env) as (segment, dispatch, journey):
        headers = {"Authorization": "Bearer bench"}
        async with httpx.AsyncClient(headers=headers, timeout=300.0) as http:
            await _define(http, segment.url, dispatch.url, journey.url)
            PROGRESS.note(f"planting {count:,} profiles, members, orders and consent")
            generated = await _plant(dsn, segment.name, dispatch.name, journey.name, count)
            PROGRESS.note(f"dry run over {count:,} profiles")
            services = {"journey": journey, "segment": segment, "dispatch": dispatch}
            cpu_before = {name: tree_cpu_seconds(p.pid) for name, p in services.items()}
            started = time.perf_counter()
            answer = await http.post(
                f"{journey.url}/journeys/{_JOURNEY}/dry-run", json={"days": _DAYS}
            )
            seconds = time.perf_counter() - started
            cpu = {n: tree_cpu_seconds(p.pid) - cpu_before[n] for n, p in services.items()}
    answer.raise_for_status()
    report = answer.json()
    print(
        f"dry run: {report['people']:,} people, {report['entries']:,} entries, "
        f"{report['behaviours']:,} behaviours, sends {report['sends']}, policy {report['policy']}"
    )
    print(
        "CPU seconds the request took, by service (apart from the machine's load): "
        + ", ".join(f"{name} {used:.2f}" for name, used in cpu.items())
        + f"; load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}"
    )
    return [
        generated,
        Rate("profiles replayed by the dry run", report["people"], seconds),
        Rate("profiles replayed per journey CPU second", report["people"], cpu["journey"]),
    ]


@asynccontextmanager
async def _services(
    env: dict[str, str],
) -> AsyncIterator[tuple[ServiceProcess, ServiceProcess, ServiceProcess]]:
    async with AsyncExitStack() as stack:
        segment = await stack.enter_async_context(_one("bench_dry_segment", "segment", env))
        dispatch = await stack.enter_async_context(_one("bench_dry_dispatch", "dispatch", env))
        journey_env = {
            **env,
            "CLOSELOOP_JOURNEY_SEGMENT_URL": segment.url,
            "CLOSELOOP_JOURNEY_DISPATCH_URL": dispatch.url,
            "CLOSELOOP_JOURNEY_CONTENT_URL": "",
        }
        journey = await stack.enter_async_context(_one("bench_dry_journey", "journey", journey_env))
        yield segment, dispatch, journey


@asynccontextmanager
async def _one(name: str, service: str, env: dict[str, str]) -> AsyncIterator[ServiceProcess]:
    async with replicas(name, f"services.{service}", env, 1) as (process,):
        await process.migrate()
        process.start()
        await process.wait_ready(timeout=60)
        yield process


async def _define(http: httpx.AsyncClient, segment: str, dispatch: str, journey: str) -> None:
    for response in (
        await http.post(
            f"{segment}/segments",
            json={"id": _SEGMENT, "name": "bench", "conditions": {"tag": "bench"}},
        ),
        await http.put(f"{dispatch}/policies", json=_POLICY),
        await http.post(f"{journey}/journeys", json={"id": _JOURNEY, "name": "bench", **_GRAPH}),
    ):
        response.raise_for_status()


async def _plant(dsn: str, segment: str, dispatch: str, journey: str, count: int) -> Rate:
    """Profiles in three time zones, one in ten a VIP, all members; a fifth with an order at
    some moment of the week; one in a hundred without email consent."""
    connection = await asyncpg.connect(dsn)
    started = time.perf_counter()
    try:
        await connection.execute(
            f"INSERT INTO {journey}.profiles (profile_id, traits, tags) "
            "SELECT 'prf_' || i, jsonb_build_object('email', 'p' || i || '@example.org', "
            "'timezone', (ARRAY['UTC', 'Asia/Shanghai', 'America/New_York'])[1 + i % 3]), "
            'CASE WHEN i % 10 = 0 THEN \'["bench", "vip"]\'::jsonb ELSE \'["bench"]\'::jsonb END '
            "FROM generate_series(1, $1) AS i",
            count,
        )
        await connection.execute(
            f"INSERT INTO {journey}.memberships (segment_id, profile_id, entered_at) "
            "SELECT $2, 'prf_' || i, now() FROM generate_series(1, $1) AS i",
            count,
            _SEGMENT,
        )
        await connection.execute(
            f"INSERT INTO {segment}.behaviours (profile_id, event, occurred_at, properties) "
            "SELECT 'prf_' || i, 'order_completed', "
            "now() - make_interval(secs => (i * 7919) % (7 * 86400)), "
            "jsonb_build_object('total', i % 90) FROM generate_series(1, $1, 5) AS i",
            count,
        )
        await connection.execute(
            f"INSERT INTO {dispatch}.preferences (profile_id, consent) "
            "SELECT 'prf_' || i, '{\"email\": false}'::jsonb FROM generate_series(1, $1, 100) AS i",
            count,
        )
        for table in (f"{journey}.profiles", f"{journey}.memberships", f"{segment}.behaviours"):
            await connection.execute(f"ANALYZE {table}")
    finally:
        await connection.close()
    return Rate("profiles planted (copy, membership, orders)", count, time.perf_counter() - started)


def report(rates: list[Rate]) -> None:
    print_table("Journey dry run", rates, [])
    print(f"dry run of {rates[1].count:,} profiles: {rates[1].seconds:.2f} s")
    print(f"results: {save('dryrun', rates, [])}")


def figures(rates: list[Rate], ceilings: Ceilings) -> list[Figure]:
    generated, replayed, journey_cpu = rates
    scenario = f"journey dry run ({replayed.count:,} profiles)"
    return [
        Figure(scenario, "profiles planted", generated.per_second, "/s"),
        Figure(
            scenario,
            "dry run, request to answer",
            replayed.seconds,
            "s",
            targets=(Target(TARGET_SECONDS, at_most=True),),
        ),
        Figure(scenario, "journey CPU for the dry run", journey_cpu.seconds, "s"),
    ]

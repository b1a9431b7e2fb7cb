"""A broadcast to `count` profiles (`--profiles`, 1,000,000 by default): the time to its first
send and its sends a second, through journey, content and dispatch to a webhook receiver.

Journey, content and dispatch run as real processes (`python -m services.<name>`) on a broker
and a database started for this scenario; the receiver is bench/receiver.py. A webhook channel
to the receiver and a webhook template are made through dispatch's and content's APIs. The
members are written straight into journey's own tables, as segment.v1 would have announced
them: `count` rows into its profile read model and as many into its `memberships`, each with
one `INSERT … SELECT generate_series` (timed apart; no segment service runs, so journey does not
ask whether the segment exists). A first broadcast to one other member warms the path up (every
consumer has joined its group). Then `POST /broadcasts` sends the template to the segment now,
at the most a broadcast allows (`per_minute` 1,000,000): the time to first send runs from that
call to the first webhook at the receiver, the sends a second from the first webhook to the last
distinct idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.progress import PROGRESS
from bench.raw import Ceilings
from bench.receiver import Receiver
from bench.report import Rate, print_table, save, serving
from bench.summary import Figure
from libs.common.settings import Settings
from libs.devstack import ServiceProcess, free_port
from libs.devstack.scratch import scratch_stack

PER_MINUTE = 1_000_000
"""The most a broadcast allows: the throttle is not what is measured."""
_SERVICES = ("journey", "content", "dispatch")
_ADMIN_TOKEN = "bench"
_SEGMENT = "seg_bench_broadcast"
_WARM_SEGMENT = "seg_bench_warm"
_TEMPLATE = "tpl_bench_broadcast"
_FIRST_SEND_SECONDS = 300.0
_SLOWEST_SENDS_PER_SECOND = 100.0  # the wait for every send allows this pace at worst


async def run(_bootstrap: str, _database_url: str, _dsn: str, count: int) -> list[Rate]:
    """On a broker and a database of its own (as the loop's), started for it."""
    async with scratch_stack("closeloop-bench-broadcast-") as (broker, database):
        return await _measure(broker.bootstrap, database.url, database.dsn, count)


async def _measure(bootstrap: str, database_url: str, dsn: str, count: int) -> list[Rate]:
    receiver = Receiver()
    try:
        async with _running(bootstrap, database_url) as services:
            journey = services["journey"]
            await _define(services, receiver.url)
            PROGRESS.note(f"writing {count:,} members into journey's tables")
            members = await _write_members(dsn, _schema(journey.name), count)
            print(
                f"broadcast: {count:,} profiles and memberships written straight into journey's "
                f"tables (INSERT … SELECT generate_series) in {members.seconds:.1f} s"
            )
            await _warm_up(journey.url, receiver)
            first, sends = await _broadcast(journey.url, receiver, count)
    finally:
        await receiver.aclose()
    return [members, first, sends]


@contextlib.asynccontextmanager
async def _running(bootstrap: str, database_url: str) -> AsyncIterator[dict[str, ServiceProcess]]:
    """Journey, content and dispatch, migrated and ready; stopped after."""
    run_id = uuid.uuid4().hex[:6]
    logs = Path(tempfile.mkdtemp(prefix="closeloop-bench-broadcast-"))
    ports = {name: free_port() for name in _SERVICES}
    env = {
        "CLOSELOOP_KAFKA_BOOTSTRAP": bootstrap,
        "CLOSELOOP_KAFKA_IDEMPOTENCE": "false",
        "CLOSELOOP_DATABASE_URL": database_url,
        "CLOSELOOP_ADMIN_TOKEN": _ADMIN_TOKEN,
        # Content signs each message's unsubscribe link; dispatch serves it.
        "CLOSELOOP_TRACKING_SECRET": "bench-tracking-secret",
        "CLOSELOOP_TRACKING_BASE_URL": f"http://127.0.0.1:{ports['dispatch']}",
        "CLOSELOOP_LOG_LEVEL": "WARNING",
        "CLOSELOOP_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "CLOSELOOP_DISPATCH_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        "CLOSELOOP_JOURNEY_CONTENT_URL": f"http://127.0.0.1:{ports['content']}",
        "CLOSELOOP_JOURNEY_SEGMENT_URL": "",
    }
    processes = {
        name: ServiceProcess(
            f"{name}_broadcast_{run_id}", f"services.{name}", env, port, log_dir=logs
        )
        for name, port in ports.items()
    }
    async with serving(
        processes, f"broadcast: journey, content and dispatch ready (logs in {logs})"
    ):
        yield processes


def _schema(service_name: str) -> str:
    return Settings(service_name=service_name).schema_name


async def _call(service: ServiceProcess, path: str, body: Any) -> Any:
    headers = {"Authorization": f"Bearer {_ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=service.url, headers=headers, timeout=60) as client:
        response = await client.post(path, json=body)
    if response.status_code >= 300:
        raise RuntimeError(f"{service.name} {path}: {response.status_code} {response.text}")
    return response.json() if response.content else None


async def _define(services: Mapping[str, ServiceProcess], receiver_url: str) -> None:
    """A webhook channel to the receiver, and the template the broadcast sends."""
    channel = {"name": "webhook", "kind": "webhook", "config": {"url": receiver_url, "secret": "s"}}
    await _call(services["dispatch"], "/channels", channel)
    template = {
        "id": _TEMPLATE,
        "name": "bench broadcast",
        "channel": "webhook",
        "variants": [{"id": "only", "payload": {"issue": "{{ issue }}"}}],
    }
    await _call(services["content"], "/templates", template)


async def _write_members(dsn: str, schema: str, count: int) -> Rate:
    """`count` profiles in journey's read model and in the segment, and one warm-up member."""
    connection = await asyncpg.connect(dsn)
    started = time.perf_counter()
    try:
        await connection.execute(
            f"INSERT INTO {schema}.profiles (profile_id) "
            "SELECT 'prf_' || i FROM generate_series(0, $1) AS i",
            count,
        )
        await connection.execute(
            f"INSERT INTO {schema}.memberships (segment_id, profile_id, entered_at) "
            "SELECT CASE WHEN i = 0 THEN $2 ELSE $3 END, 'prf_' || i, now() "
            "FROM generate_series(0, $1) AS i",
            count,
            _WARM_SEGMENT,
            _SEGMENT,
        )
        await connection.execute(f"ANALYZE {schema}.profiles; ANALYZE {schema}.memberships")
    finally:
        await connection.close()
    return Rate("members written (profiles, memberships)", count, time.perf_counter() - started)


async def _warm_up(journey_url: str, receiver: Receiver) -> None:
    """A broadcast to the one warm-up member, until its webhook arrives."""
    await _create(journey_url, _WARM_SEGMENT)
    await _first_webhook(receiver, "the warm-up broadcast's webhook")
    await receiver.reset()


async def _broadcast(journey_url: str, receiver: Receiver, count: int) -> tuple[Rate, Rate]:
    """The time to first send (one, in that many seconds) and the sends' rate."""
    posted = time.monotonic()
    await _create(journey_url, _SEGMENT)
    await _first_webhook(receiver, "the broadcast's first webhook")
    first = await receiver.stats()
    deadline = time.monotonic() + _FIRST_SEND_SECONDS + count / _SLOWEST_SENDS_PER_SECOND
    stats = first
    while stats["distinct"] < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the receiver has {stats['distinct']:,} of {count:,} sends")
        await asyncio.sleep(1.0)
        stats = await receiver.stats()
        PROGRESS.note(f"{stats['distinct']:,} of {count:,} sent")
    first_send = Rate("time to first send (POST to first webhook)", 1, first["first"] - posted)
    sends = Rate(
        "sends through dispatch (first to last webhook)", count, stats["last"] - first["first"]
    )
    return first_send, sends


async def _create(journey_url: str, segment: str) -> None:
    headers = {"Authorization": f"Bearer {_ADMIN_TOKEN}"}
    body = {
        "name": f"bench {segment}",
        "segment": segment,
        "channel": "webhook",
        "template_id": _TEMPLATE,
        "variables": {"issue": 1},
        "per_minute": PER_MINUTE,
    }
    async with httpx.AsyncClient(base_url=journey_url, headers=headers, timeout=60) as client:
        response = await client.post("/broadcasts", json=body)
    if response.status_code != 201:
        raise RuntimeError(f"POST /broadcasts: {response.status_code} {response.text}")


async def _first_webhook(receiver: Receiver, what: str) -> None:
    deadline = time.monotonic() + _FIRST_SEND_SECONDS
    while (await receiver.stats())["distinct"] == 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no webhook within {_FIRST_SEND_SECONDS:.0f} s: {what}")
        PROGRESS.note(f"waiting for {what}")
        await asyncio.sleep(0.05)


def report(rates: list[Rate]) -> None:
    _, first, sends = rates
    print_table(f"Broadcast to {sends.count:,} profiles", rates, [])
    print(f"time to first send: {first.seconds:.2f} s; sends/s: {sends.per_second:,.0f}")
    print(f"results: {save('broadcast', rates, [])}")


def figures(rates: list[Rate], _: Ceilings) -> list[Figure]:
    """No target: the issue asks for the figures."""
    members, first, sends = rates
    scenario = f"broadcast ({sends.count:,} profiles)"
    return [
        Figure(scenario, "members written into journey's tables", members.per_second, "/s"),
        Figure(scenario, "time to first send", first.seconds, "s"),
        Figure(scenario, "sends through dispatch", sends.per_second, "sends/s"),
    ]

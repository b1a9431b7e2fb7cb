"""Ingest over HTTP: `POST /v1/batch` accepted events/s at full load, latency at half that, and
single `POST /v1/track` calls at full load."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import secrets
import shutil
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson

from bench import raw
from bench.progress import PROGRESS
from bench.raw import Ceilings
from bench.replicas import replicas
from bench.report import (
    Rate,
    Ratio,
    percentile,
    print_table,
    processes_label,
    save,
    services_cpu_seconds,
)
from bench.summary import Figure, Target
from libs.common import topics
from libs.common.bus import ensure_topics
from libs.devstack import ServiceProcess
from libs.devstack.scratch import scratch_stack
from services.ingest.calls import Receipt, to_message

TARGET_EVENTS_PER_SECOND = 50_000
TARGET_RATIO = 0.5
BATCH_CALLS = 100
CONNECTIONS_PER_PROCESS = 8  # requests in flight at full load, per ingest process
PACED_MAX_SECONDS = 20.0  # the fixed-rate phase sends at most this long
PACED_MIN_REQUESTS = 50
TRACK_CALLS = 5_000  # single /v1/track calls: one request each, so fewer of them
REQUEST_TIMEOUT_SECONDS = 30.0
PHASE_TIMEOUT_SECONDS = 300.0
# The ingest service runs as a real process on the given broker and database, with a source made
# through `/sources`; this process drives it over loopback with aiohttp. Full load:
# CONNECTIONS_PER_PROCESS requests always in flight per ingest process (a request waits on
# Kafka's acknowledgement most of its time, so fewer leave a process idle: with 4 per process,
# two processes kept 1.8 of the 2 cores busy and accepted ~20% fewer events). Then an
# open-loop schedule at half that rate: each request is sent when due, whatever the earlier
# answers, and its latency counts from when it was due. Beside them: raw aiokafka produce of the
# same events, encoded as ingest encodes them, in the same run.
_CATEGORIES = ("tea", "teaware", "snacks", "gifts")
_USER_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15"
)


@dataclass(frozen=True)
class Throughput(Rate):
    """Events accepted with every connection busy, by `processes` ingest processes."""

    processes: int = 1
    service_cpu_seconds: float = 0.0  # user + system, all ingest processes, during the phase
    load_cpu_seconds: float = 0.0  # this process, the load generator

    @property
    def service_cpu_us_per_event(self) -> float:
        return self.service_cpu_seconds / self.count * 1e6 if self.count else 0.0


@dataclass(frozen=True)
class SingleCalls(Rate):
    """Single `/v1/track` calls accepted with every connection busy: one request per event."""

    service_cpu_seconds: float = 0.0


@dataclass(frozen=True)
class Paced(Rate):
    """Events sent on a fixed schedule; latency of each request from when it was due."""

    processes: int = 1
    offered_per_second: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0


def segment_calls(count: int, run_id: str, people: int = 5000) -> list[dict[str, Any]]:
    """What analytics.js sends from a shop: mostly product views, some pages and identifies."""
    start = datetime.now(UTC) - timedelta(minutes=10)
    calls: list[dict[str, Any]] = []
    for i in range(count):
        person = i % people
        sku = f"SKU-{i % 997:04d}"
        category = _CATEGORIES[i % len(_CATEGORIES)]
        call: dict[str, Any] = {
            "messageId": f"ajs-{run_id}-{i:09d}",
            "anonymousId": str(uuid.UUID(int=person + 1)),
            "timestamp": (start + timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z"),
            "context": {
                "ip": f"203.0.113.{person % 250}",
                "userAgent": _USER_AGENT,
                "library": {"name": "analytics.js", "version": "next-1.72.0"},
            },
        }
        if i % 10 == 0:
            call |= {
                "type": "identify",
                "userId": f"u_{run_id}_{person}",
                "traits": {"email": f"shopper{person}@example.com", "plan": "premium"},
            }
        elif i % 10 < 3:
            path = f"/c/{category}"
            call |= {
                "type": "page",
                "name": category.title(),
                "properties": {"path": path, "url": f"https://shop.example.com{path}"},
            }
        else:
            call |= {
                "type": "track",
                "userId": f"u_{run_id}_{person}",
                "event": "product_viewed",
                "properties": {"sku": sku, "category": category, "price": 19.9, "currency": "EUR"},
            }
        calls.append(call)
    return calls


def batch_bodies(calls: Sequence[dict[str, Any]]) -> list[bytes]:
    sent_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return [
        orjson.dumps({"batch": calls[first : first + BATCH_CALLS], "sentAt": sent_at})
        for first in range(0, len(calls), BATCH_CALLS)
    ]


async def run(
    bootstrap: str, database_url: str, dsn: str, count: int, *, py_spy: Path | None = None
) -> list[Rate]:
    """Raw produce, then one ingest process, then two; `py_spy` records the first's full load."""
    run_id = uuid.uuid4().hex[:8]
    raw_topic = f"bench.ingest-raw.{run_id}"
    await ensure_topics(bootstrap, [topics.INGEST, raw_topic], 12, 1)
    calls = segment_calls(count, run_id)
    bodies = batch_bodies(calls)
    receipt = Receipt("src_bench", datetime.now(UTC))
    encoded = (to_message(call["type"], call, receipt) for call in calls)
    messages = [(m.key or b"", m.value or b"", m.headers) for m in encoded]
    call_bytes = sum(len(orjson.dumps(call)) for call in calls) / count
    message_bytes = sum(
        len(key) + len(value) + sum(len(name) + len(data) for name, data in headers)
        for key, value, headers in messages
    )
    print(
        f"ingest: {count} calls of {call_bytes:.0f} bytes on average in {len(bodies)} batches of "
        f"{BATCH_CALLS}; Kafka messages of {message_bytes / count:.0f} bytes (key+value+headers)"
    )
    produced = await raw.produce(bootstrap, raw_topic, messages)
    del messages
    env = {
        "CLOSELOOP_KAFKA_BOOTSTRAP": bootstrap,
        "CLOSELOOP_DATABASE_URL": database_url,
        "CLOSELOOP_ADMIN_TOKEN": secrets.token_urlsafe(24),
        "CLOSELOOP_KAFKA_IDEMPOTENCE": "false",  # the embedded broker has no idempotent producer
        "CLOSELOOP_LOG_LEVEL": "WARNING",
    }
    rates: list[Rate] = [produced]
    for processes in (1, 2):
        PROGRESS.note(f"/v1/batch, {processes_label(processes)}")
        async with _ingest(f"bench_ingest_{run_id}", env, processes) as services:
            rates += await _measure(services, env, bodies, py_spy if processes == 1 else None)
            if processes == 1:
                PROGRESS.note("single /v1/track calls, 1 process")
                rates.append(await _single_tracks(services[0], env, calls))
    return rates


@contextlib.asynccontextmanager
async def _ingest(
    name: str, env: dict[str, str], processes: int
) -> AsyncIterator[list[ServiceProcess]]:
    """`processes` ingest processes of one service (one schema), each on its own port, ready."""
    async with replicas(name, "services.ingest", env, processes) as services:
        await services[0].migrate()
        for service in services:
            service.start()
        for service in services:
            await service.wait_ready(60.0)
        yield services


async def _measure(
    services: list[ServiceProcess],
    env: dict[str, str],
    bodies: list[bytes],
    py_spy: Path | None,
) -> list[Rate]:
    processes = len(services)
    write_key = await _create_source(services[0].url, env["CLOSELOOP_ADMIN_TOKEN"])
    basic = base64.b64encode(f"{write_key}:".encode()).decode()
    headers = {"authorization": f"Basic {basic}", "content-type": "application/json"}
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(_load_client(service.url, headers))
            for service in services
        ]
        connections = CONNECTIONS_PER_PROCESS * processes
        await _full_load(clients, bodies[: 2 * connections], connections)  # warm-up, key cache
        service_cpu, load_cpu = services_cpu_seconds(services), time.process_time()
        async with _recording(services[0], py_spy):
            seconds = await _full_load(clients, bodies, connections)
        full = Throughput(
            f"ingest /v1/batch, {processes_label(processes)}, full load ({connections} conns)",
            len(bodies) * BATCH_CALLS,
            seconds,
            processes=processes,
            service_cpu_seconds=services_cpu_seconds(services) - service_cpu,
            load_cpu_seconds=time.process_time() - load_cpu,
        )
        await asyncio.sleep(1.0)  # let the broker settle between the phases
        paced = await _paced(clients, bodies, full.per_second / 2, processes)
    return [full, paced]


async def _single_tracks(
    service: ServiceProcess, env: dict[str, str], calls: Sequence[dict[str, Any]]
) -> SingleCalls:
    """Up to TRACK_CALLS track calls, each its own `POST /v1/track`, CONNECTIONS_PER_PROCESS
    in flight."""
    tracks = [orjson.dumps(call) for call in calls if call["type"] == "track"][:TRACK_CALLS]
    write_key = await _create_source(service.url, env["CLOSELOOP_ADMIN_TOKEN"])
    basic = base64.b64encode(f"{write_key}:".encode()).decode()
    headers = {"authorization": f"Basic {basic}", "content-type": "application/json"}
    pending = enumerate(tracks, start=1)
    async with _load_client(service.url, headers) as client:

        async def connection() -> None:
            for sent, body in pending:
                async with client.post("/v1/track", data=body) as response:
                    if response.status != 200:
                        raise RuntimeError(
                            f"POST /v1/track answered {response.status}: {await response.text()}"
                        )
                PROGRESS.note(f"{sent:,} of {len(tracks):,} tracks sent")

        cpu = services_cpu_seconds([service])
        started = time.perf_counter()
        async with asyncio.timeout(PHASE_TIMEOUT_SECONDS), asyncio.TaskGroup() as group:
            for _ in range(CONNECTIONS_PER_PROCESS):
                group.create_task(connection())
        seconds = time.perf_counter() - started
    return SingleCalls(
        f"ingest /v1/track, 1 process, full load ({CONNECTIONS_PER_PROCESS} conns)",
        len(tracks),
        seconds,
        service_cpu_seconds=services_cpu_seconds([service]) - cpu,
    )


async def _create_source(url: str, admin_token: str) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_SECONDS) as client:
        response = await client.post(
            "/sources",
            json={"name": "bench"},
            headers={"authorization": f"Bearer {admin_token}"},
        )
    if response.status_code != 201:
        raise RuntimeError(f"POST /sources answered {response.status_code}: {response.text}")
    key: str = response.json()["write_key"]
    return key


def _load_client(url: str, headers: dict[str, str]) -> aiohttp.ClientSession:
    """The load generator's HTTP client: aiohttp, whose CPU per request is a fraction of
    httpx's, so that less of the two cores the service shares goes to the load itself."""
    return aiohttp.ClientSession(
        base_url=url,
        headers=headers,
        connector=aiohttp.TCPConnector(limit=256),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
    )


async def _post(client: aiohttp.ClientSession, body: bytes) -> None:
    async with client.post("/v1/batch", data=body) as response:
        text = await response.read()
        if response.status != 200:
            raise RuntimeError(f"POST /v1/batch answered {response.status}: {text!r}")
    answer = orjson.loads(text)
    if answer["rejected"] or answer["accepted"] != BATCH_CALLS:
        raise RuntimeError(f"POST /v1/batch did not accept every call: {answer}")


async def _full_load(
    clients: list[aiohttp.ClientSession], bodies: Sequence[bytes], connections: int
) -> float:
    """Seconds to have every body accepted, with `connections` requests always in flight."""
    pending = iter(bodies)

    async def connection(client: aiohttp.ClientSession) -> None:
        for body in pending:
            await _post(client, body)

    started = time.perf_counter()
    async with asyncio.timeout(PHASE_TIMEOUT_SECONDS), asyncio.TaskGroup() as group:
        for index in range(connections):
            group.create_task(connection(clients[index % len(clients)]))
    return time.perf_counter() - started


async def _paced(
    clients: list[aiohttp.ClientSession], bodies: Sequence[bytes], events_per_second: float, n: int
) -> Paced:
    """Send a request every 1/rate seconds whatever the answers; latency counted from when due."""
    interval = BATCH_CALLS / events_per_second
    requests = min(len(bodies), max(PACED_MIN_REQUESTS, int(PACED_MAX_SECONDS / interval)))
    loop = asyncio.get_running_loop()
    latencies: list[float] = []

    async def send(client: aiohttp.ClientSession, body: bytes, due: float) -> None:
        await _post(client, body)
        latencies.append(loop.time() - due)

    start = loop.time() + 0.1
    async with asyncio.timeout(PHASE_TIMEOUT_SECONDS), asyncio.TaskGroup() as group:
        for index in range(requests):
            due = start + index * interval
            await asyncio.sleep(max(0.0, due - loop.time()))
            group.create_task(send(clients[index % len(clients)], bodies[index], due))
    seconds = loop.time() - start
    latencies.sort()
    return Paced(
        f"ingest /v1/batch, {processes_label(n)}, fixed rate {events_per_second:,.0f}/s",
        requests * BATCH_CALLS,
        seconds,
        processes=n,
        offered_per_second=events_per_second,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        max_ms=latencies[-1] * 1000,
    )


@contextlib.asynccontextmanager
async def _recording(service: ServiceProcess, output: Path | None) -> AsyncIterator[None]:
    """Sample the service with py-spy (raw folded stacks) while the block runs, if asked."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if output is None or service.pid is None:
        yield
        return
    recorder = await asyncio.create_subprocess_exec(
        py_spy, "record", "--pid", str(service.pid), "--format", "raw", "--rate", "200",
        "--nonblocking", "--output", str(output),
    )  # fmt: skip
    await asyncio.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        await recorder.wait()


def ratios(rates: list[Rate]) -> list[Ratio]:
    produced = rates[0]
    computed: list[Ratio] = []
    for rate in rates:
        if isinstance(rate, Throughput):
            label = f"ingest ({processes_label(rate.processes)})"
            computed += [
                Ratio(
                    f"{label} events/s / {TARGET_EVENTS_PER_SECOND:,}",
                    rate.per_second / TARGET_EVENTS_PER_SECOND,
                    1.0,
                ),
                Ratio(
                    f"{label} / raw produce", rate.per_second / produced.per_second, TARGET_RATIO
                ),
            ]
    return computed


def figures(rates: list[Rate], _: Ceilings) -> list[Figure]:
    """Against raw produce of the same events, measured first in this scenario."""
    produced = rates[0]
    targets = (Target(TARGET_EVENTS_PER_SECOND), Target(TARGET_RATIO, on="ratio"))
    computed = [Figure("ingest", "raw produce of these events", produced.per_second, "events/s")]
    for rate in rates[1:]:
        if isinstance(rate, Throughput):
            computed.append(
                Figure(
                    "ingest",
                    f"/v1/batch, {processes_label(rate.processes)}, full load",
                    rate.per_second,
                    "events/s",
                    "raw produce",
                    produced.per_second,
                    targets,
                )
            )
        elif isinstance(rate, Paced):
            label = f"/v1/batch, {processes_label(rate.processes)}, p99 at half load"
            computed.append(Figure("ingest", label, rate.p99_ms, "ms"))
        elif isinstance(rate, SingleCalls):
            computed.append(
                Figure(
                    "ingest",
                    "/v1/track single calls, 1 process, full load",
                    rate.per_second,
                    "events/s",
                    "raw produce",
                    produced.per_second,
                )
            )
    return computed


def report(rates: list[Rate]) -> None:
    computed = ratios(rates)
    print_table("Ingest throughput (HTTP POST /v1/batch and /v1/track)", rates, computed)
    for rate in rates:
        if isinstance(rate, Throughput) and rate.service_cpu_seconds:
            print(
                f"CPU at full load, {processes_label(rate.processes)}: ingest "
                f"{rate.service_cpu_seconds:.2f} s ({rate.service_cpu_us_per_event:.0f} µs per "
                f"event, {rate.service_cpu_seconds / rate.seconds:.0%} of one core), "
                f"load generator {rate.load_cpu_seconds:.2f} s "
                f"({rate.load_cpu_seconds / rate.seconds:.0%} of one core)"
            )
        if isinstance(rate, SingleCalls) and rate.service_cpu_seconds:
            print(
                f"CPU for single /v1/track calls: ingest {rate.service_cpu_seconds:.2f} s "
                f"({rate.service_cpu_seconds / rate.count * 1e6:.0f} µs per call)"
            )
        if isinstance(rate, Paced):
            print(
                f"latency, {processes_label(rate.processes)} at {rate.offered_per_second:,.0f} "
                f"events/s offered ({rate.count // BATCH_CALLS} requests of {BATCH_CALLS}): "
                f"p50 {rate.p50_ms:.1f} ms, p99 {rate.p99_ms:.1f} ms, max {rate.max_ms:.1f} ms"
            )
    print(
        f"note: {os.cpu_count()} CPUs shared by the broker, PostgreSQL, the ingest process(es) "
        "and this load generator"
    )
    print(f"results: {save('ingest', rates, computed)}")


async def _main(count: int, py_spy: Path | None) -> None:
    async with scratch_stack("closeloop-bench-") as (broker, db):
        report(await run(broker.bootstrap, db.url, db.dsn, count, py_spy=py_spy))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--py-spy", type=Path, help="record the service's full load to this file")
    arguments = parser.parse_args()
    asyncio.run(_main(arguments.events, arguments.py_spy))

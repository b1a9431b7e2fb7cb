"""Loop latency: `POST /v1/track` to the webhook receiver, through all seven services.

The seven services run as real processes on a broker and a database started for this scenario
(not the run's: see `run`), each in a schema of its own. A journey entered on the behaviour
`bench_ping` sends a webhook whose payload carries the event's `sent_at`; the receiver
(bench/receiver.py, its own process) takes the difference on arrival. The load generator posts
one `/v1/track` per event, each for a new person, on a fixed schedule (open loop: an event is
sent when due, whatever the earlier answers, and stamped with the time it was due), at `RATE`
events/s for `count / RATE` seconds (at most `MAX_SECONDS`). The figures: p50, p99 and p999 of
the latency, what arrived, each service's CPU time per event, and each service's memory (RSS,
with its child processes): idle after the warm-up, and the peak while the load runs and drains.
The latency over time is drawn to bench/results/loop-latency.png (`LOOP_LATENCY_PLOT=path.png`
elsewhere); `LOOP_PROFILE=dir` records every service with py-spy; `LOOP_RATE` changes the rate;
`LOOP_PG_STATEMENTS=1` lists PostgreSQL's costliest statements per track (bench/pg_statements.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
import psutil

from bench import pg_statements
from bench.pg_statements import StatementCost
from bench.progress import PROGRESS
from bench.raw import Ceilings
from bench.receiver import Receiver
from bench.report import (
    RESULTS_DIR,
    Rate,
    Ratio,
    machine_busy_seconds,
    percentile,
    print_table,
    process_cpu_seconds,
    process_tree,
    save,
    tree_cpu_seconds,
)
from bench.stages import StageLatency, read_stages, stage_latencies
from bench.summary import Figure, Target
from libs.devstack import ServiceProcess, free_port
from libs.devstack.scratch import scratch_stack

RATE = 1_000
MAX_SECONDS = 30.0
WARM_UP_SECONDS = 180.0
DRAIN_SECONDS = 120.0
TARGET_P99_MS = 250.0
_P99_TARGET = Target(TARGET_P99_MS, at_most=True)
_EVENT = "bench_ping"
_ADMIN_TOKEN = "bench"
_CONSUMERS = ("profile", "segment", "journey", "content", "dispatch", "attribution")
_RSS_SAMPLE_SECONDS = 0.5
_BATCH_METRIC = "closeloop_consumer_batch_size_events"
_CONNECTIONS = 64  # to ingest, as many requests in flight at most
_MB = 1024 * 1024
# The machine's busy CPU time that no measured part (services, broker, PostgreSQL, load
# generator, receiver) accounts for: the kernel's own work, py-spy if asked for, anything else.
_REST = "rest of the machine"
_STATEMENTS = bool(os.environ.get("LOOP_PG_STATEMENTS"))


@dataclass(frozen=True)
class LoopLatency(Rate):
    """Events sent at a fixed rate and the latency of each, behaviour to webhook."""

    offered_per_second: float = 0.0
    arrived: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    p999_ms: float = 0.0
    max_ms: float = 0.0
    cpu_us_per_event: Mapping[str, float] = field(default_factory=dict)
    # The rest of the machine's CPU per event: the broker, PostgreSQL, the load generator.
    shared_cpu_us_per_event: Mapping[str, float] = field(default_factory=dict)
    # Per consuming service: events it consumed per track, and their mean batch size.
    consumed_per_event: Mapping[str, float] = field(default_factory=dict)
    events_per_batch: Mapping[str, float] = field(default_factory=dict)
    rss_idle_mb: Mapping[str, float] = field(default_factory=dict)
    rss_peak_mb: Mapping[str, float] = field(default_factory=dict)
    # Each service's stage on a track's path, from the topics' record times (bench/stages.py).
    stages: Sequence[StageLatency] = ()
    # With LOOP_PG_STATEMENTS: PostgreSQL's costliest statements per track.
    statements: Sequence[StatementCost] = ()


async def run(_bootstrap: str, _database_url: str, _dsn: str, count: int) -> list[Rate]:
    """The loop on a broker and a database of its own, started for it, not on the run's.

    The embedded broker's CPU per request grows with what earlier scenarios left it (topics,
    data, consumer groups): in `make bench`, where the loop came last on the shared broker, the
    broker spent 1,035-1,652 µs per track at 1,000/s, against 210-330 µs on a fresh one.
    That is the embedded broker's history, not the loop's work.
    """
    options = pg_statements.POSTGRES_OPTIONS if _STATEMENTS else ()
    async with scratch_stack("closeloop-bench-loop-", postgres_options=options) as (
        broker,
        database,
    ):
        return await _measure(broker.bootstrap, database.url, database.dsn, count)


async def _measure(bootstrap: str, database_url: str, dsn: str, count: int) -> list[Rate]:
    rate = int(os.environ.get("LOOP_RATE", RATE))
    seconds = min(count / rate, MAX_SECONDS)
    receiver = Receiver()
    try:
        async with _loop_services(bootstrap, database_url) as services:
            write_key = await _define(services, receiver.url)
            ingest = services["ingest"].url
            await _warm_up(ingest, write_key, receiver)
            await receiver.reset()
            idle = _rss_mb(services)
            cpu_before = _cpu_seconds(services)
            shared_before = _shared_cpu_seconds(receiver.pid)
            batches_before = await _batches(services)
            if _STATEMENTS:
                await pg_statements.reset(dsn)
            with _profiled(services):
                async with _peak_rss(services) as peak:
                    due = await _paced(ingest, write_key, rate, seconds)
                    sent = len(due)
                    await _drain(receiver, sent)
            cpu = {name: used - cpu_before[name] for name, used in _cpu_seconds(services).items()}
            shared = {
                name: used - shared_before.get(name, 0.0)
                for name, used in _shared_cpu_seconds(receiver.pid).items()
            }
            parts = sum(cpu.values()) + sum(v for part, v in shared.items() if part != _REST)
            shared[_REST] -= parts  # what the machine was busy with beyond all the parts
            batches = {
                name: (count - batches_before[name][0], events - batches_before[name][1])
                for name, (count, events) in (await _batches(services)).items()
            }
            latencies = await receiver.latencies()
            statements = await pg_statements.costliest(dsn, sent) if _STATEMENTS else []
    finally:
        await receiver.aclose()
    stages = stage_latencies(due, await read_stages(bootstrap))
    _plot(latencies)
    summary = _summary(latencies, sent, seconds, rate, cpu)
    shared_us = {name: used / sent * 1e6 for name, used in shared.items()}
    return [
        dataclasses.replace(
            summary,
            shared_cpu_us_per_event=shared_us,
            consumed_per_event={name: events / sent for name, (_, events) in batches.items()},
            events_per_batch={name: events / max(n, 1) for name, (n, events) in batches.items()},
            rss_idle_mb=idle,
            rss_peak_mb=peak,
            stages=stages,
            statements=statements,
        )
    ]


@contextlib.asynccontextmanager
async def _loop_services(bootstrap: str, database_url: str) -> AsyncIterator[dict[str, Any]]:
    """The seven services, started together, stopped after."""
    run_id = uuid.uuid4().hex[:6]
    logs = Path(tempfile.mkdtemp(prefix="closeloop-bench-loop-"))
    ports = {name: free_port() for name in ("ingest", *_CONSUMERS)}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    common = {
        "CLOSELOOP_KAFKA_BOOTSTRAP": bootstrap,
        "CLOSELOOP_KAFKA_IDEMPOTENCE": "false",
        "CLOSELOOP_DATABASE_URL": database_url,
        "CLOSELOOP_ADMIN_TOKEN": _ADMIN_TOKEN,
        "CLOSELOOP_TRACKING_SECRET": "bench-tracking-secret",
        "CLOSELOOP_TRACKING_BASE_URL": urls["dispatch"],
        "CLOSELOOP_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "CLOSELOOP_LOG_LEVEL": "WARNING",
        "CLOSELOOP_DISPATCH_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        "CLOSELOOP_JOURNEY_CONTENT_URL": urls["content"],
        "CLOSELOOP_JOURNEY_SEGMENT_URL": urls["segment"],
    }
    processes = {
        name: ServiceProcess(
            f"{name}_loop_{run_id}", f"services.{name}", common, port, log_dir=logs
        )
        for name, port in ports.items()
    }
    try:
        await asyncio.gather(*(process.migrate() for process in processes.values()))
        for process in processes.values():
            process.start()
        await asyncio.gather(*(process.wait_ready(120) for process in processes.values()))
        print(f"loop: seven services ready (logs in {logs})")
        yield processes
    finally:
        await asyncio.gather(*(process.stop() for process in processes.values()))


async def _define(services: Mapping[str, ServiceProcess], receiver_url: str) -> str:
    """A webhook channel to the receiver, its template, a journey on `bench_ping`; a source."""
    headers = {"Authorization": f"Bearer {_ADMIN_TOKEN}"}

    async def call(service: str, path: str, body: Any) -> Any:
        async with httpx.AsyncClient(base_url=services[service].url, headers=headers) as client:
            response = await client.post(path, json=body, timeout=30)
        if response.status_code >= 300:
            raise RuntimeError(f"{service} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    await call(
        "dispatch",
        "/channels",
        {"name": "webhook", "kind": "webhook", "config": {"url": receiver_url, "secret": "s"}},
    )
    await call(
        "content",
        "/templates",
        {
            "id": "tpl_ping",
            "name": "ping",
            "channel": "webhook",
            "variants": [{"id": "only", "payload": {"sent_at": "{{ event.properties.sent_at }}"}}],
        },
    )
    await call(
        "journey",
        "/journeys",
        {
            "id": "jrn_ping",
            "name": "ping",
            "entry": {"event": _EVENT},
            "start": "hook",
            "nodes": {"hook": {"type": "send", "channel": "webhook", "template_id": "tpl_ping"}},
        },
    )
    await call("journey", "/journeys/jrn_ping/publish", None)
    source = await call("ingest", "/sources", {"name": "bench"})
    write_key: str = source["write_key"]
    return write_key


def _write_key_auth(write_key: str) -> dict[str, str]:
    """HTTP Basic with the write key as the user name, as Segment's clients send it."""
    return {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


async def _warm_up(ingest: str, write_key: str, receiver: Receiver) -> None:
    """Send a ping a second until one comes round: every consumer has joined its group."""
    headers = _write_key_auth(write_key)
    deadline = time.monotonic() + WARM_UP_SECONDS
    async with aiohttp.ClientSession(base_url=ingest, headers=headers) as session:
        while (await receiver.stats())["distinct"] == 0:
            PROGRESS.note("warming up: waiting for a first ping to come round")
            if time.monotonic() > deadline:
                raise TimeoutError("no ping came round the loop during the warm-up")
            await _post(session, f"warm_{uuid.uuid4().hex}")
            await asyncio.sleep(1.0)


async def _post(session: aiohttp.ClientSession, user_id: str) -> None:
    body = {"userId": user_id, "event": _EVENT, "properties": {"sent_at": repr(time.time())}}
    async with session.post("/v1/track", json=body) as response:
        if response.status != 200:
            raise RuntimeError(f"ingest answered {response.status}: {await response.text()}")


async def _paced(ingest: str, write_key: str, rate: int, seconds: float) -> dict[str, float]:
    """Post `rate` tracks a second for `seconds` on an open-loop schedule; the user id of each
    track sent and the time it was due.

    Each track is stamped with the wall-clock time it was due and queued for the next free
    connection, so time spent waiting for one counts in its latency. The requests are written
    by hand on keep-alive connections: aiohttp cost ~300 µs of the shared cores per track, a
    tenth of what the seven services spend.
    """
    run_id = uuid.uuid4().hex[:8]
    total = int(rate * seconds)
    # Spread evenly, a track each millisecond at 1,000/s: bursts would be cheaper to carry
    # (one produce and one batch for several tracks) than traffic from many independent clients.
    per_tick = max(1, rate // 1000)
    tick = per_tick / rate
    authorization = _write_key_auth(write_key)["Authorization"]
    host = urllib.parse.urlsplit(ingest).netloc
    due: asyncio.Queue[bytes | None] = asyncio.Queue()
    due_at: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    print(f"loop: {total} tracks at {rate}/s over {seconds:.0f} s", flush=True)
    async with asyncio.TaskGroup() as group:
        for _ in range(_CONNECTIONS):
            group.create_task(_connection(ingest, due))
        start, wall_start = loop.time() + 0.1, time.time() + 0.1
        for index in range(0, total, per_tick):
            since_start = (index // per_tick) * tick
            await asyncio.sleep(max(0.0, start + since_start - loop.time()))
            for number in range(index, min(index + per_tick, total)):
                user_id = f"{run_id}_{number}"
                due_at[user_id] = wall_start + since_start
                due.put_nowait(_track(host, authorization, user_id, due_at[user_id]))
            if index % rate == 0 and index:
                PROGRESS.note(
                    f"sent {index:,} of {total:,} ({index / (loop.time() - start):,.0f}/s)"
                )
        for _ in range(_CONNECTIONS):
            due.put_nowait(None)
    return due_at


def _track(host: str, authorization: str, user_id: str, sent_at: float) -> bytes:
    """One `POST /v1/track` as HTTP/1.1 bytes, its payload saying when it was due."""
    body = orjson.dumps(
        {"userId": user_id, "event": _EVENT, "properties": {"sent_at": repr(sent_at)}}
    )
    head = (
        f"POST /v1/track HTTP/1.1\r\nHost: {host}\r\nAuthorization: {authorization}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _connection(ingest: str, due: asyncio.Queue[bytes | None]) -> None:
    """A keep-alive connection to ingest sending queued requests one at a time until None."""
    url = urllib.parse.urlsplit(ingest)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        while (request := await due.get()) is not None:
            writer.write(request)
            status, body = await _answer(reader)
            if status != 200:
                raise RuntimeError(f"ingest answered {status}: {body[:500]!r}")
    finally:
        writer.close()


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status and body of one HTTP/1.1 answer with a Content-Length."""
    status_line = await reader.readuntil(b"\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    length = None
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise RuntimeError(f"ingest answered without a Content-Length: {status_line!r}")
    return int(status_line.split(b" ", 2)[1]), await reader.readexactly(length)


async def _drain(receiver: Receiver, sent: int) -> None:
    deadline = time.monotonic() + DRAIN_SECONDS
    while (stats := await receiver.stats())["timed"] < sent:
        PROGRESS.note(f"draining: {stats['timed']:,} of {sent:,} arrived")
        if time.monotonic() > deadline:
            print(f"loop: only {stats['timed']} of {sent} arrived within {DRAIN_SECONDS:.0f} s")
            return
        await asyncio.sleep(0.2)


@contextlib.contextmanager
def _profiled(services: Mapping[str, ServiceProcess]) -> Iterator[None]:
    """py-spy on every service while the block runs, when LOOP_PROFILE names a directory:
    raw folded stacks in <dir>/<service>.txt."""
    folder = os.environ.get("LOOP_PROFILE")
    if not folder:
        yield
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    recorders = [
        subprocess.Popen(
            [
                *(py_spy, "record", "--pid", str(service.pid), "--rate", "100"),
                *("--format", "raw", "--subprocesses", "-o", f"{folder}/{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, service in services.items()
    ]
    try:
        yield
    finally:
        for recorder in recorders:
            recorder.send_signal(signal.SIGINT)
        for recorder in recorders:
            recorder.wait(60)


def _rss_mb(services: Mapping[str, ServiceProcess]) -> dict[str, float]:
    """Each service's resident memory in MB, its child processes (workers) included."""
    return {name: _tree_rss(service.pid) / _MB for name, service in services.items()}


def _tree_rss(pid: int | None) -> int:
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(psutil.Error):  # a worker may exit between the two calls
            total += member.memory_info().rss
    return total


@contextlib.asynccontextmanager
async def _peak_rss(services: Mapping[str, ServiceProcess]) -> AsyncIterator[dict[str, float]]:
    """The highest RSS each service reached while the block ran, sampled twice a second."""
    peak = dict.fromkeys(services, 0.0)

    async def sample() -> None:
        while True:
            for name, mb in _rss_mb(services).items():
                peak[name] = max(peak[name], mb)
            await asyncio.sleep(_RSS_SAMPLE_SECONDS)

    sampler = asyncio.create_task(sample())
    try:
        yield peak
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        for name, mb in _rss_mb(services).items():
            peak[name] = max(peak[name], mb)


def _cpu_seconds(services: Mapping[str, ServiceProcess]) -> dict[str, float]:
    """User + system CPU seconds each service used so far, its worker processes included."""
    return {name: tree_cpu_seconds(service.pid) for name, service in services.items()}


def _shared_cpu_seconds(receiver_pid: int) -> dict[str, float]:
    """CPU seconds of what shares the machine with the services, each so far: the broker
    (tansu), PostgreSQL (the postmaster and every process it started, exited ones included),
    this process (the load generator) and the receiver; and under `_REST`, every core's busy
    time, from which the caller takes all the parts to leave what none of them accounts for."""
    used = {
        "broker": 0.0,
        "PostgreSQL": 0.0,
        "load generator": process_cpu_seconds(os.getpid()),
        "receiver": tree_cpu_seconds(receiver_pid),
        _REST: machine_busy_seconds(),
    }
    for process in psutil.process_iter(["name", "ppid"]):
        name = process.info["name"] or ""
        if name.startswith("tansu"):
            used["broker"] += tree_cpu_seconds(process.pid)
        elif name == "postgres" and _process_name(process.info["ppid"]) != "postgres":
            used["PostgreSQL"] += tree_cpu_seconds(process.pid)  # a postmaster
    return used


def _process_name(pid: int | None) -> str:
    try:
        return psutil.Process(pid).name() if pid else ""
    except psutil.Error:
        return ""


async def _batches(services: Mapping[str, ServiceProcess]) -> dict[str, tuple[float, float]]:
    """Per consuming service, batches handled and events in them so far (its /metrics)."""
    totals: dict[str, tuple[float, float]] = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for name in _CONSUMERS:
            text = (await client.get(f"{services[name].url}/metrics")).text
            totals[name] = (
                _metric_sum(text, f"{_BATCH_METRIC}_count"),
                _metric_sum(text, f"{_BATCH_METRIC}_sum"),
            )
    return totals


def _metric_sum(exposition: str, metric: str) -> float:
    """The sum of a metric's samples over all their labels, from Prometheus' text format."""
    return sum(
        float(line.rpartition(" ")[2])
        for line in exposition.splitlines()
        if line.startswith(metric + "{") or line.startswith(metric + " ")
    )


def _summary(
    latencies: list[tuple[float, float]],
    sent: int,
    seconds: float,
    rate: int,
    cpu: Mapping[str, float],
) -> LoopLatency:
    ordered = sorted(latency for _, latency in latencies) or [float("nan")]
    return LoopLatency(
        f"loop latency, /v1/track to webhook, {rate}/s offered",
        sent,
        seconds,
        cpu_us_per_event={name: used / sent * 1e6 for name, used in cpu.items()},
        offered_per_second=rate,
        arrived=len(latencies),
        p50_ms=percentile(ordered, 0.50) * 1000,
        p99_ms=percentile(ordered, 0.99) * 1000,
        p999_ms=percentile(ordered, 0.999) * 1000,
        max_ms=ordered[-1] * 1000,
    )


def _plot(latencies: list[tuple[float, float]]) -> None:
    output = os.environ.get("LOOP_LATENCY_PLOT") or str(RESULTS_DIR / "loop-latency.png")
    if not latencies:
        return
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = latencies[0][0]
    figure, axes = plt.subplots(figsize=(10, 4))
    axes.scatter([a - start for a, _ in latencies], [lat * 1000 for _, lat in latencies], s=1)
    axes.set_xlabel("seconds since the first arrival")
    axes.set_ylabel("latency, ms")
    axes.set_title("Loop latency: POST /v1/track to webhook receiver")
    figure.savefig(output, dpi=100, bbox_inches="tight")
    print(f"loop: latency plot in {output}")


def ratios(rates: list[Rate]) -> list[Ratio]:
    """The p99 target as a ratio: target / p99, met when ≥ 1."""
    return [
        Ratio("target p99 / measured p99", TARGET_P99_MS / rate.p99_ms, 1.0)
        for rate in rates
        if isinstance(rate, LoopLatency) and rate.p99_ms > 0
    ]


def report(rates: list[Rate]) -> None:
    computed = ratios(rates)
    print_table("Loop latency (all seven services)", rates, computed)
    for rate in rates:
        if isinstance(rate, LoopLatency):
            print(
                f"{rate.arrived} of {rate.count} arrived; p50 {rate.p50_ms:.0f} ms, "
                f"p99 {rate.p99_ms:.0f} ms, p999 {rate.p999_ms:.0f} ms, max {rate.max_ms:.0f} ms "
                f"(target p99 < {TARGET_P99_MS:.0f} ms)"
            )
            per_service = ", ".join(f"{n} {us:.0f}" for n, us in rate.cpu_us_per_event.items())
            total = sum(rate.cpu_us_per_event.values())
            print(f"CPU µs per event: {per_service}; all seven {total:.0f} µs")
            shared = ", ".join(f"{n} {us:.0f}" for n, us in rate.shared_cpu_us_per_event.items())
            print(f"CPU µs per event besides the services: {shared}")
            consumed = ", ".join(
                f"{name} {per_event:.1f} in batches of {rate.events_per_batch[name]:.1f}"
                for name, per_event in rate.consumed_per_event.items()
            )
            print(f"Events consumed per track: {consumed}")
            stages = ", ".join(
                f"{stage.name} {stage.p50_ms:,.0f}/{stage.p99_ms:,.0f}"
                + f" ({stage.to_made_p50_ms:,.0f} + {stage.made_to_published_p50_ms:,.0f})"
                for stage in rate.stages
            )
            print(
                "Stage p50/p99 ms, record consumed published → record made published "
                f"(p50 to the event made + made to published): {stages}"
            )
            if rate.statements:
                print("PostgreSQL's costliest statements:")
                print("\n".join(pg_statements.statement_lines(list(rate.statements))))
            memory = ", ".join(
                f"{name} {rate.rss_idle_mb.get(name, 0):.0f}→{mb:.0f}"
                for name, mb in rate.rss_peak_mb.items()
            )
            print(f"RSS MB, idle→peak under load: {memory}")
    print(f"results: {save('loop', rates, computed)}")


def figures(rates: list[Rate], _: Ceilings) -> list[Figure]:
    """The latency percentiles (the p99 against its target), what arrived, and memory."""
    (latency,) = rates
    assert isinstance(latency, LoopLatency)
    scenario = f"loop ({latency.offered_per_second:,.0f}/s offered)"
    arrived = latency.arrived / latency.count if latency.count else 0.0
    return [
        Figure(scenario, "latency p50", latency.p50_ms, "ms"),
        Figure(scenario, "latency p99", latency.p99_ms, "ms", targets=(_P99_TARGET,)),
        Figure(scenario, "latency p999", latency.p999_ms, "ms"),
        Figure(scenario, "arrived within the drain", arrived * 100, "%"),
        Figure(
            scenario, "CPU, all seven services", sum(latency.cpu_us_per_event.values()), "µs/event"
        ),
        *(
            Figure(scenario, f"CPU, {name}", us, "µs/event")
            for name, us in latency.shared_cpu_us_per_event.items()
        ),
        *(
            Figure("memory", f"{name} RSS idle", mb, "MB")
            for name, mb in latency.rss_idle_mb.items()
        ),
        *(
            Figure("memory", f"{name} RSS peak under load", mb, "MB")
            for name, mb in latency.rss_peak_mb.items()
        ),
    ]

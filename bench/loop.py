"""Loop latency: `POST /v1/track` to the webhook receiver, through all seven services.

The seven services run as real processes on a broker and a database started for this scenario
(not the run's: see `run`), each in a schema of its own. A journey entered on the behaviour
`bench_ping` sends a webhook whose payload carries the event's `sent_at`; the receiver
(bench/receiver.py, its own process) takes the difference on arrival. The load generator posts
one `/v1/track` per event, each for a new person, on a fixed schedule (open loop: an event is
sent when due, whatever the earlier answers, and stamped with the time it was due).

Once a first ping has come round (every consumer has joined its group), the loop is warmed up
under load: the lowest rate for `LOOP_WARM_UP_SECONDS` (default 20), drained, not measured.
Then one measured phase per rate, `RATES` (500 and 1,000 tracks/s; `LOOP_RATES=400,800` or
`LOOP_RATE=100` for others), each for `LOOP_SECONDS` if set, else `count / rate` seconds (at
most `MAX_SECONDS`), and drained before the next: every webhook arrived, and every
consumer's counters still (`_settle`). `python -m bench loop --quick` sets 20 s of warm-up and
15 s per phase.

The figures of each phase: p50, p99 and p999 of the latency, what arrived; per consuming
service, the events it decoded per track (`decoded_events`: records its consumer skipped by
their `ce_type` header without decoding them do not count) beside what the batch-size
histogram counts; each service's CPU time per track, the broker's, PostgreSQL's, the load
generator's and the receiver's, and the whole machine's (every core's busy time, whatever ran
on it); each service's memory (RSS, with its child processes): idle after the warm-up, and the
peak while the load runs and drains. The targets: at most `TARGET_DECODED_PER_TRACK` events
decoded per track by the six consumers together, at most `TARGET_CPU_US_PER_TRACK` of the
whole machine's CPU per track at `TARGET_CPU_RATE`, a p99 under `TARGET_P99_MS` at
`TARGET_P99_RATE`.

The latency over time is drawn to bench/results/loop-latency-<rate>.png (`LOOP_LATENCY_PLOT=
path.png` elsewhere, the rate added to its name); `LOOP_PROFILE=dir` records every service with
py-spy; `LOOP_PG_STATEMENTS=1` lists PostgreSQL's costliest statements per track
(bench/pg_statements.py). `python -m bench loop-compare` runs this scenario for two trees in
turn (bench/alternate.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import os
import re
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
    StackProcesses,
    machine_busy_seconds,
    percentile,
    print_table,
    process_cpu_seconds,
    process_tree,
    save,
    serving,
    tree_cpu_seconds,
)
from bench.stages import StageLatency, read_stages, stage_latencies
from bench.summary import Figure, Target
from libs.devstack import ServiceProcess, free_port
from libs.devstack.scratch import scratch_stack

RATES = (500, 1_000)
MAX_SECONDS = 30.0
WARM_UP_SECONDS = 20.0  # under load, at the lowest rate, before the measured phases
FIRST_PING_SECONDS = 180.0  # at most, for a first ping to come round
DRAIN_SECONDS = 120.0
SETTLE_SECONDS = 1.0
SETTLE_MAX_SECONDS = 60.0
QUICK_WARM_UP_SECONDS = 20.0
QUICK_SECONDS = 15.0
TARGET_P99_MS = 250.0
TARGET_P99_RATE = 500
TARGET_CPU_US_PER_TRACK = 1_500.0
TARGET_CPU_RATE = 1_000
TARGET_DECODED_PER_TRACK = 12.0
_P99_TARGET = Target(TARGET_P99_MS, at_most=True)
_CPU_TARGET = Target(TARGET_CPU_US_PER_TRACK, at_most=True, or_equal=True)
_DECODED_TARGET = Target(TARGET_DECODED_PER_TRACK, at_most=True, or_equal=True)
_EVENT = "bench_ping"
_ADMIN_TOKEN = "bench"
_CONSUMERS = ("profile", "segment", "journey", "content", "dispatch", "attribution")
_RSS_SAMPLE_SECONDS = 0.5
_BATCH_METRIC = "closeloop_consumer_batch_size_events"
# Events a consumer decoded, if the services export it; samples labelled as skipped are left out.
DECODED_METRIC = "closeloop_consumer_events_total"
_SKIPPED_LABEL_VALUES = frozenset({"skipped", "skip", "passed_over", "not_decoded", "false"})
# Without it: what the consumer counts of the events it decoded, by what became of them.
DECODED_FALLBACK = (
    "closeloop_events_consumed_total",  # handled and committed
    "closeloop_events_duplicate_total",  # decoded, then found in the inbox
    "closeloop_events_failed_total",  # did not decode (reason invalid) or failed the handler
)
_CONNECTIONS = 64  # to ingest, as many requests in flight at most
_MB = 1024 * 1024
# The machine's busy CPU time that no measured part (services, broker, PostgreSQL, load
# generator, receiver) accounts for: the kernel's own work, py-spy if asked for, anything else.
_REST = "rest of the machine"
_STATEMENTS = bool(os.environ.get("LOOP_PG_STATEMENTS"))
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


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
    # Every core's busy time per event, whatever ran on it (the sum of all the parts above).
    machine_cpu_us_per_event: float = 0.0
    # Per consuming service: events per track as its batch-size histogram counts them, and
    # their mean batch size.
    consumed_per_event: Mapping[str, float] = field(default_factory=dict)
    events_per_batch: Mapping[str, float] = field(default_factory=dict)
    # Per consuming service: events it decoded per track, and the metric that told.
    decoded_per_event: Mapping[str, float] = field(default_factory=dict)
    decoded_metric: str = ""
    rss_idle_mb: Mapping[str, float] = field(default_factory=dict)
    rss_peak_mb: Mapping[str, float] = field(default_factory=dict)
    # Each service's stage on a track's path, from the topics' record times (bench/stages.py).
    stages: Sequence[StageLatency] = ()
    # With LOOP_PG_STATEMENTS: PostgreSQL's costliest statements per track.
    statements: Sequence[StatementCost] = ()

    @property
    def decoded_per_track(self) -> float:
        """Events the six consumers decoded per track, together."""
        return sum(self.decoded_per_event.values())

    @property
    def loop_cpu_us_per_event(self) -> float:
        """The CPU per event of the loop's own processes: all but the rest of the machine."""
        shared = sum(us for name, us in self.shared_cpu_us_per_event.items() if name != _REST)
        return sum(self.cpu_us_per_event.values()) + shared


@dataclass(frozen=True)
class _Counters:
    """What the services and the machine had used and counted at one moment."""

    cpu: Mapping[str, float]
    shared: Mapping[str, float]
    batches: Mapping[str, tuple[float, float]]
    decoded: Mapping[str, float]
    decoded_metric: str


def rates() -> list[int]:
    """The measured phases' rates, tracks/s: LOOP_RATES (comma-separated), else LOOP_RATE (one
    phase), else RATES."""
    if listed := os.environ.get("LOOP_RATES"):
        return [int(rate) for rate in listed.split(",") if rate.strip()]
    if single := os.environ.get("LOOP_RATE"):
        return [int(single)]
    return list(RATES)


def phase_seconds(count: int, rate: int) -> float:
    """How long a phase sends: LOOP_SECONDS, else `count / rate` up to MAX_SECONDS."""
    if fixed := os.environ.get("LOOP_SECONDS"):
        return float(fixed)
    return min(count / rate, MAX_SECONDS)


def quick() -> None:
    """`--quick`: a short warm-up and short phases, unless the environment says otherwise."""
    os.environ.setdefault("LOOP_WARM_UP_SECONDS", str(QUICK_WARM_UP_SECONDS))
    os.environ.setdefault("LOOP_SECONDS", str(QUICK_SECONDS))


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
    phases = [(rate, phase_seconds(count, rate)) for rate in rates()]
    warm_up = float(os.environ.get("LOOP_WARM_UP_SECONDS", WARM_UP_SECONDS))
    receiver = Receiver()
    own = StackProcesses(bootstrap, dsn)
    measured: list[tuple[LoopLatency, dict[str, float]]] = []
    try:
        async with loop_services(bootstrap, database_url) as services:
            write_key = await _define(services, receiver.url)
            ingest = services["ingest"].url
            await _warm_up(ingest, write_key, receiver)
            if warm_up > 0:
                await receiver.reset()
                PROGRESS.say(f"warming up under load: {min(rates())}/s for {warm_up:.0f} s")
                await _drain(receiver, len(await _paced(ingest, write_key, min(rates()), warm_up)))
                await _settle(services)
            idle = _rss_mb(services)
            for rate, seconds in phases:
                PROGRESS.say(f"measuring at {rate:,}/s for {seconds:.0f} s")
                phase, due = await _phase(
                    services, receiver, own, dsn, (ingest, write_key), rate, seconds
                )
                measured.append((dataclasses.replace(phase, rss_idle_mb=idle), due))
    finally:
        await receiver.aclose()
    published = await read_stages(bootstrap)
    return [
        dataclasses.replace(phase, stages=stage_latencies(due, published))
        for phase, due in measured
    ]


async def _phase(
    services: Mapping[str, ServiceProcess],
    receiver: Receiver,
    own: StackProcesses,
    dsn: str,
    ingest: tuple[str, str],
    rate: int,
    seconds: float,
) -> tuple[LoopLatency, dict[str, float]]:
    """One measured phase at `rate`: the figures, and when each track was due."""
    url, write_key = ingest
    await receiver.reset()
    before = await _counters(services, own, receiver.pid)
    if _STATEMENTS:
        await pg_statements.reset(dsn)
    with _profiled(services, rate):
        async with _peak_rss(services) as peak:
            due = await _paced(url, write_key, rate, seconds)
            sent = len(due)
            await _drain(receiver, sent)
            await _settle(services)
    after = await _counters(services, own, receiver.pid)
    latencies = await receiver.latencies()
    statements = await pg_statements.costliest(dsn, sent) if _STATEMENTS else []
    cpu = {name: used - before.cpu[name] for name, used in after.cpu.items()}
    shared = {name: used - before.shared.get(name, 0.0) for name, used in after.shared.items()}
    machine = shared[_REST]
    parts = sum(cpu.values()) + sum(v for part, v in shared.items() if part != _REST)
    shared[_REST] = machine - parts  # what the machine was busy with beyond all the parts
    batches = {
        name: (n - before.batches[name][0], events - before.batches[name][1])
        for name, (n, events) in after.batches.items()
    }
    decoded = {name: value - before.decoded[name] for name, value in after.decoded.items()}
    _plot(latencies, rate)
    summary = _summary(latencies, sent, seconds, rate, cpu)
    phase = dataclasses.replace(
        summary,
        shared_cpu_us_per_event={name: used / sent * 1e6 for name, used in shared.items()},
        machine_cpu_us_per_event=machine / sent * 1e6,
        consumed_per_event={name: events / sent for name, (_, events) in batches.items()},
        events_per_batch={name: events / max(n, 1) for name, (n, events) in batches.items()},
        decoded_per_event={name: value / sent for name, value in decoded.items()},
        decoded_metric=after.decoded_metric,
        rss_peak_mb=peak,
        statements=statements,
    )
    return phase, due


async def _settle(services: Mapping[str, ServiceProcess]) -> None:
    """Wait until no consumer decodes anything more (its counters still for `SETTLE_SECONDS`):
    segment and attribution are off the webhook's path and may still be catching up when the
    last webhook has arrived. Their work belongs to the phase that sent it, not the next."""
    deadline = time.monotonic() + SETTLE_MAX_SECONDS
    last = None
    while time.monotonic() < deadline:
        now = {name: decoded_events(text)[0] for name, text in (await _metrics(services)).items()}
        if now == last:
            return
        last = now
        PROGRESS.note("waiting for every consumer to settle")
        await asyncio.sleep(SETTLE_SECONDS)
    print(f"loop: the consumers were still decoding after {SETTLE_MAX_SECONDS:.0f} s")


async def _counters(
    services: Mapping[str, ServiceProcess], own: StackProcesses, receiver_pid: int
) -> _Counters:
    metrics = await _metrics(services)
    decoded = {name: decoded_events(text) for name, text in metrics.items()}
    kinds = {metric for _, metric in decoded.values()}
    return _Counters(
        cpu=_cpu_seconds(services),
        shared=_shared_cpu_seconds(own, receiver_pid),
        batches={
            name: (
                _metric_sum(text, f"{_BATCH_METRIC}_count"),
                _metric_sum(text, f"{_BATCH_METRIC}_sum"),
            )
            for name, text in metrics.items()
        },
        decoded={name: value for name, (value, _) in decoded.items()},
        decoded_metric=" / ".join(sorted(kinds)),
    )


@contextlib.asynccontextmanager
async def loop_services(
    bootstrap: str, database_url: str, env: Mapping[str, str] | None = None
) -> AsyncIterator[dict[str, Any]]:
    """The seven services, started together (with `env` over the loop's settings), stopped
    after."""
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
        **(env or {}),
    }
    processes = {
        name: ServiceProcess(
            f"{name}_loop_{run_id}", f"services.{name}", common, port, log_dir=logs
        )
        for name, port in ports.items()
    }
    async with serving(processes, f"loop: seven services ready (logs in {logs})"):
        yield processes


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
    deadline = time.monotonic() + FIRST_PING_SECONDS
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
def _profiled(services: Mapping[str, ServiceProcess], rate: int) -> Iterator[None]:
    """py-spy on every service while the block runs, when LOOP_PROFILE names a directory:
    raw folded stacks in <dir>/<service>-<rate>.txt."""
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
                *("--format", "raw", "--subprocesses", "-o", f"{folder}/{name}-{rate}.txt"),
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


def _shared_cpu_seconds(own: StackProcesses, receiver_pid: int) -> dict[str, float]:
    """CPU seconds of what shares the machine with the services, each so far: the loop's
    broker and PostgreSQL, this process (the load generator) and the receiver; and under
    `_REST`, every core's busy time, from which the caller takes all the parts to leave what
    none of them accounts for (another broker or database on the machine among it)."""
    return {
        **own.cpu_seconds(),
        "load generator": process_cpu_seconds(os.getpid()),
        "receiver": tree_cpu_seconds(receiver_pid),
        _REST: machine_busy_seconds(),
    }


async def _metrics(services: Mapping[str, ServiceProcess]) -> dict[str, str]:
    """Each consuming service's /metrics, as Prometheus' text format."""
    async with httpx.AsyncClient(timeout=10) as client:
        return {
            name: (await client.get(f"{services[name].url}/metrics")).text for name in _CONSUMERS
        }


def decoded_events(exposition: str) -> tuple[float, str]:
    """Events a service's consumers have decoded so far, and the metric that told.

    `closeloop_consumer_events_total` when the service exports it, less its samples with a
    label saying they were skipped (`outcome="skipped"`, `decoded="false"` and the like).
    Without it: the events its consumers handled, found to be duplicates, or failed on (to
    decode or in the handler), which between them are every event the consumer decoded.
    Records skipped by their `ce_type` header are in none of these; the batch-size histogram
    counts them.
    """
    samples = _samples(exposition, DECODED_METRIC)
    if samples:
        kept = [
            value
            for labels, value in samples
            if not _SKIPPED_LABEL_VALUES.intersection(labels.values())
        ]
        return sum(kept), DECODED_METRIC
    return sum(_metric_sum(exposition, metric) for metric in DECODED_FALLBACK), " + ".join(
        metric.removeprefix("closeloop_events_").removesuffix("_total")
        for metric in DECODED_FALLBACK
    )


def _samples(exposition: str, metric: str) -> list[tuple[dict[str, str], float]]:
    """A metric's samples, each its labels and value, from Prometheus' text format."""
    samples = []
    for line in exposition.splitlines():
        if line.startswith(metric + "{"):
            labels_text, _, value = line[len(metric) + 1 :].rpartition("} ")
            samples.append((dict(_LABEL.findall(labels_text)), float(value)))
        elif line.startswith(metric + " "):
            samples.append(({}, float(line.rpartition(" ")[2])))
    return samples


def _metric_sum(exposition: str, metric: str) -> float:
    """The sum of a metric's samples over all their labels, from Prometheus' text format."""
    return sum(value for _, value in _samples(exposition, metric))


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


def _plot(latencies: list[tuple[float, float]], rate: int) -> None:
    chosen = Path(os.environ.get("LOOP_LATENCY_PLOT") or RESULTS_DIR / "loop-latency.png")
    output = chosen.with_name(f"{chosen.stem}-{rate}{chosen.suffix or '.png'}")
    if not latencies:
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = latencies[0][0]
    figure, axes = plt.subplots(figsize=(10, 4))
    axes.scatter([a - start for a, _ in latencies], [lat * 1000 for _, lat in latencies], s=1)
    axes.set_xlabel("seconds since the first arrival")
    axes.set_ylabel("latency, ms")
    axes.set_title(f"Loop latency at {rate:,} tracks/s: POST /v1/track to webhook receiver")
    figure.savefig(output, dpi=100, bbox_inches="tight")
    plt.close(figure)
    print(f"loop: latency plot in {output}")


def _phases(rates: list[Rate]) -> list[LoopLatency]:
    return [rate for rate in rates if isinstance(rate, LoopLatency)]


def ratios(rates: list[Rate]) -> list[Ratio]:
    """The p99 target as a ratio, at the rate it is set for: target / p99, met when ≥ 1."""
    return [
        Ratio(f"target p99 / measured p99 at {TARGET_P99_RATE}/s", TARGET_P99_MS / rate.p99_ms, 1.0)
        for rate in _phases(rates)
        if rate.offered_per_second == TARGET_P99_RATE and rate.p99_ms > 0
    ]


def report(rates: list[Rate]) -> None:
    computed = ratios(rates)
    print_table("Loop latency (all seven services)", rates, computed)
    for rate in _phases(rates):
        print(f"\nLoop at {rate.offered_per_second:,.0f} tracks/s")
        print(
            f"{rate.arrived} of {rate.count} arrived; p50 {rate.p50_ms:.0f} ms, "
            f"p99 {rate.p99_ms:.0f} ms, p999 {rate.p999_ms:.0f} ms, max {rate.max_ms:.0f} ms"
            + _beside(rate, TARGET_P99_RATE, rate.p99_ms, _P99_TARGET, "ms")
        )
        print("\n".join(per_track_lines(rate)))
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


def per_track_lines(rate: LoopLatency) -> list[str]:
    """Per service: events decoded, the batch-size histogram's events and CPU, per track; then
    the other parts' CPU, the loop's processes' and the whole machine's, targets beside."""
    header = ("per track", "decoded", "batch-size hist.", "per batch", "CPU µs")
    rows = [header]
    for name, us in rate.cpu_us_per_event.items():
        decoded = rate.decoded_per_event.get(name)
        rows.append(
            (
                name,
                "" if decoded is None else f"{decoded:.2f}",
                _cell(rate.consumed_per_event.get(name), ".2f"),
                _cell(rate.events_per_batch.get(name), ".1f"),
                f"{us:,.0f}",
            )
        )
    services_us = sum(rate.cpu_us_per_event.values())
    rows.append(
        (
            "all seven services",
            f"{rate.decoded_per_track:.2f}",
            f"{sum(rate.consumed_per_event.values()):.2f}",
            "",
            f"{services_us:,.0f}",
        )
    )
    rows += [(name, "", "", "", f"{us:,.0f}") for name, us in rate.shared_cpu_us_per_event.items()]
    rows.append(("the loop's processes", "", "", "", f"{rate.loop_cpu_us_per_event:,.0f}"))
    rows.append(("whole machine", "", "", "", f"{rate.machine_cpu_us_per_event:,.0f}"))
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(width) if column == 0 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    decoded_verdict = _verdict(rate.decoded_per_track, _DECODED_TARGET)
    lines[len(rate.cpu_us_per_event) + 1] += (
        f"   target decoded {_DECODED_TARGET.describe('/track')}: {decoded_verdict}"
    )
    lines[-1] += _beside(rate, TARGET_CPU_RATE, rate.machine_cpu_us_per_event, _CPU_TARGET, "µs")
    lines.append(f"(decoded: {rate.decoded_metric}; batch-size hist.: {_BATCH_METRIC})")
    return lines


def _cell(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _verdict(value: float, target: Target) -> str:
    return {True: "met", False: "NOT met", None: "—"}[target.met_by(value, None)]


def _beside(rate: LoopLatency, at: int, value: float, target: Target, unit: str) -> str:
    """The target and its verdict, for the phase at the rate the target is set for."""
    if rate.offered_per_second != at:
        return ""
    return f"   target {target.describe(unit)} at {at:,}/s: {_verdict(value, target)}"


def figures(rates: list[Rate], _: Ceilings) -> list[Figure]:
    """Per phase: the latency percentiles, what arrived, the events decoded per track and the
    CPU per track of each part; the memory of the fastest phase. Targets: the p99 at
    TARGET_P99_RATE, the whole machine's CPU at TARGET_CPU_RATE, the events decoded always."""
    phases = _phases(rates)
    out: list[Figure] = []
    for latency in phases:
        rate = latency.offered_per_second
        scenario = f"loop ({rate:,.0f}/s offered)"
        arrived = latency.arrived / latency.count if latency.count else 0.0
        p99_targets = (_P99_TARGET,) if rate == TARGET_P99_RATE else ()
        cpu_targets = (_CPU_TARGET,) if rate == TARGET_CPU_RATE else ()
        out += [
            Figure(scenario, "latency p50", latency.p50_ms, "ms"),
            Figure(scenario, "latency p99", latency.p99_ms, "ms", targets=p99_targets),
            Figure(scenario, "latency p999", latency.p999_ms, "ms"),
            Figure(scenario, "arrived within the drain", arrived * 100, "%"),
            Figure(
                scenario,
                "events decoded, six consumers",
                latency.decoded_per_track,
                "/track",
                targets=(_DECODED_TARGET,),
            ),
            *(
                Figure(scenario, f"events decoded, {name}", value, "/track")
                for name, value in latency.decoded_per_event.items()
            ),
            Figure(
                scenario,
                "batch-size histogram events, six consumers",
                sum(latency.consumed_per_event.values()),
                "/track",
            ),
            Figure(
                scenario,
                "CPU, all seven services",
                sum(latency.cpu_us_per_event.values()),
                "µs/event",
            ),
            *(
                Figure(scenario, f"CPU, {name}", us, "µs/event")
                for name, us in latency.cpu_us_per_event.items()
            ),
            *(
                Figure(scenario, f"CPU, {name}", us, "µs/event")
                for name, us in latency.shared_cpu_us_per_event.items()
            ),
            Figure(
                scenario, "CPU, the loop's processes", latency.loop_cpu_us_per_event, "µs/event"
            ),
            Figure(
                scenario,
                "CPU, whole machine",
                latency.machine_cpu_us_per_event,
                "µs/event",
                targets=cpu_targets,
            ),
        ]
    if phases:
        fastest = max(phases, key=lambda phase: phase.offered_per_second)
        out += [
            *(
                Figure("memory", f"{name} RSS idle", mb, "MB")
                for name, mb in fastest.rss_idle_mb.items()
            ),
            *(
                Figure("memory", f"{name} RSS peak under load", mb, "MB")
                for name, mb in fastest.rss_peak_mb.items()
            ),
        ]
    return out

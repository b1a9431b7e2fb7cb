"""Dispatch's send rate to a local webhook receiver, against its raw ceilings.

A minimal HTTP/1.1 receiver (asyncio.Protocol, keep-alive, each idempotency key stored once)
runs in its own process and times receipts. In the same run this prints: plain aiohttp (the
client dispatch's webhooks use) posting to it with dispatch's concurrency, the ceiling of client
and receiver (plain httpx too, on at most 5,000 requests, for comparison), plain asyncpg
ledger-shaped writes (insert, claim as `sending`, record as `sent`: three transactions per
batch, as dispatch commits them), and dispatch itself — `python -m services.dispatch`, its real
consumer, sender and outbox relay — sending `message.rendered` events published beforehand to
closeloop.deliveries.v1, timed from the first to the last distinct key at the receiver; then
the ratio of dispatch to the slower ceiling, and to the target of 5,000 sends/s. Dispatch is
measured as one process, then as two (replicas of one service: the consumer group splits the
partitions, and the senders claim ledger rows with SKIP LOCKED), each on its own events.

`CLOSELOOP_BENCH_PROFILE=/tmp/dispatch.svg` records the dispatch process with py-spy meanwhile.
The raw client is also a command: `python -m bench.dispatch post httpx|aiohttp PORT COUNT
CONCURRENCY`; the receiver is bench/receiver.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx
import orjson
import uvloop
from sqlalchemy import text

from bench import raw
from bench.raw import Ceilings
from bench.receiver import Receiver
from bench.replicas import replicas
from bench.report import Rate, Ratio, print_table, processes_label, save, services_cpu_seconds
from bench.summary import Figure, Target
from libs.common import topics
from libs.common.bus import ensure_topics
from libs.common.db import create_engine, create_sessions
from libs.common.events import Event, JourneyRef, MessageRendered, encode
from libs.devstack.services import ServiceProcess
from services.dispatch.settings import DispatchSettings
from services.dispatch.store import DispatchStore

TARGET_SENDS_PER_SECOND = 5_000
_REPO = Path(__file__).resolve().parents[1]
_LEDGER_BATCH = 500
_HTTPX_REQUESTS = 5_000


# The raw ceilings


async def _post_httpx(port: int, count: int, concurrency: int) -> None:
    """Plain httpx, one pool with `concurrency` keep-alive connections, as many workers."""
    url = f"http://127.0.0.1:{port}/hook/raw"
    remaining = iter(range(count))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10.0) as client:

        async def worker() -> None:
            for i in remaining:
                headers = {"content-type": "application/json", "idempotency-key": f"raw-{i}"}
                response = await client.post(url, content=_RAW_BODY, headers=headers)
                response.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _post_aiohttp(port: int, count: int, concurrency: int) -> None:
    """Plain aiohttp, as dispatch's webhooks use it: one session, `concurrency` connections."""
    url = f"http://127.0.0.1:{port}/hook/raw"
    remaining = iter(range(count))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for i in remaining:
                headers = {"content-type": "application/json", "idempotency-key": f"raw-{i}"}
                async with session.post(url, data=_RAW_BODY, headers=headers) as response:
                    response.raise_for_status()
                    await response.read()

        await asyncio.gather(*(worker() for _ in range(concurrency)))


_CLIENTS: dict[str, Callable[[int, int, int], Coroutine[Any, Any, None]]] = {
    "httpx": _post_httpx,
    "aiohttp": _post_aiohttp,
}
_RAW_BODY = orjson.dumps({"message_id": "msg_raw", "body": "Hello from the benchmark"})


async def raw_http(receiver: Receiver, client: str, count: int, concurrency: int) -> Rate:
    await receiver.reset()
    await _subprocess("post", client, str(receiver.port), str(count), str(concurrency))
    rate = await receiver.distinct_keys(count, within=600)
    return Rate(f"raw {client} POST, {concurrency} in flight (uvloop)", count, rate.seconds)


async def raw_ledger(dsn: str, count: int) -> Rate:
    """Ledger-shaped rows: inserted, claimed as `sending`, recorded `sent`, 3 transactions."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "DROP TABLE IF EXISTS bench_raw_sends; CREATE TABLE bench_raw_sends ("
            "message_id text PRIMARY KEY, idempotency_key text NOT NULL UNIQUE, "
            "profile_id text NOT NULL, channel text NOT NULL, body text, "
            "payload jsonb NOT NULL DEFAULT '{}', status text NOT NULL, "
            "attempts int NOT NULL DEFAULT 0, due_at timestamptz NOT NULL DEFAULT now(), "
            "lease_until timestamptz, decided_at timestamptz, sent_at timestamptz, "
            "provider_message_id text); "
            "CREATE INDEX ON bench_raw_sends (due_at) WHERE status IN ('pending', 'sending')"
        )
        insert = await connection.prepare(
            "INSERT INTO bench_raw_sends (message_id, idempotency_key, profile_id, channel, "
            "body, status) SELECT m, k, p, 'hook', 'Hello', 'pending' "
            "FROM unnest($1::text[], $2::text[], $3::text[]) AS r(m, k, p) "
            "ON CONFLICT (idempotency_key) DO NOTHING"
        )
        claim = await connection.prepare(
            "WITH due AS (SELECT message_id FROM bench_raw_sends WHERE status = 'pending' "
            "AND due_at <= now() ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED) "
            "UPDATE bench_raw_sends s SET status = 'sending', attempts = attempts + 1, "
            "decided_at = now(), lease_until = now() + interval '60 seconds' FROM due "
            "WHERE s.message_id = due.message_id RETURNING s.message_id"
        )
        record = await connection.prepare(
            "UPDATE bench_raw_sends s SET status = 'sent', provider_message_id = r.p, "
            "sent_at = now(), lease_until = NULL FROM unnest($1::text[], $2::text[]) AS r(m, p) "
            "WHERE s.message_id = r.m AND s.status = 'sending'"
        )
        ids = [f"msg_{i:032d}" for i in range(count)]
        started = time.perf_counter()
        for first in range(0, count, _LEDGER_BATCH):
            batch = ids[first : first + _LEDGER_BATCH]
            async with connection.transaction():
                await insert.fetch(batch, [f"key-{m}" for m in batch], [f"prf-{m}" for m in batch])
            async with connection.transaction():
                claimed = [row[0] for row in await claim.fetch(_LEDGER_BATCH)]
            async with connection.transaction():
                await record.fetch(claimed, [f"wh_{m}" for m in claimed])
        return Rate(
            f"raw PostgreSQL ledger writes (asyncpg, {_LEDGER_BATCH}/tx x3)",
            count,
            time.perf_counter() - started,
        )
    finally:
        await connection.execute("DROP TABLE IF EXISTS bench_raw_sends")
        await connection.close()


# Dispatch itself


def rendered(channel: str, count: int, run_id: str) -> list[Event[MessageRendered]]:
    now = datetime.now(UTC)
    journey = JourneyRef(journey_id="jrn_bench", journey_version=1, node_id="node_send")
    events = []
    for i in range(count):
        profile = f"prf_{run_id}_{i % 5000}"
        data = MessageRendered(
            request_id=f"req_{run_id}_{i}",
            profile_id=profile,
            channel=channel,
            template_id="tpl_bench",
            template_version=1,
            subject="Your oolong is waiting",
            body="Hello from the benchmark",
            payload={"sku": f"SKU-{i % 97}"},
            idempotency_key=f"jrn_bench:v1:node_send:{profile}:{run_id}:{i}",
            journey=journey,
            behavior_at=now,
        )
        events.append(Event(data=data, key=profile, source="closeloop/bench"))
    return events


@dataclass(frozen=True)
class Sends(Rate):
    """Sends by `processes` dispatch processes; `recorded`: timed until the ledger held them."""

    processes: int = 1
    recorded: bool = False
    # User + system CPU of the dispatch processes from their first send to their last, and the
    # sends in that window: the figure that depends least on what else the machine runs.
    service_cpu_seconds: float = 0.0
    sends_in_cpu_window: int = 0

    @property
    def cpu_us_per_send(self) -> float:
        if not self.sends_in_cpu_window:
            return 0.0
        return self.service_cpu_seconds / self.sends_in_cpu_window * 1e6


async def dispatch_rates(
    bootstrap: str,
    database_url: str,
    receiver: Receiver,
    count: int,
    run_id: str,
    processes: int,
) -> list[Rate]:
    """The service as it runs, sending events published before it started.

    Timed at the receiver (first receipt to last distinct key), then until the ledger holds
    every send as `sent`: receipts alone could hide results left unrecorded.
    """
    name = f"bench_dispatch_{run_id}"
    settings = DispatchSettings(service_name=name, database_url=database_url)
    channel = f"hook_{run_id}"
    await ensure_topics(bootstrap, list(topics.ALL), 12, 1)
    async with _service(name, bootstrap, database_url, processes) as services:
        await services[0].migrate()
        await _store_channel(settings, channel, f"{receiver.url}/hook/{channel}")
        messages = [encode(event) for event in rendered(channel, count, run_id)]
        await raw.empty_topic(bootstrap, topics.DELIVERIES)  # not the other measurement's too
        await raw.produce(bootstrap, topics.DELIVERIES, messages)
        await receiver.reset()
        for process in services:
            process.start()
        with _profiled(services[0]):
            await receiver.distinct_keys(1, within=120)
            cpu_before = services_cpu_seconds(services)
            sent_before = (await receiver.stats())["distinct"]
            sent = await receiver.distinct_keys(count, within=900)
            cpu = services_cpu_seconds(services) - cpu_before
            await _every_send_recorded(settings, count, within=300)
            recorded_at = time.monotonic()
        stats = await receiver.stats()
    resent = stats["requests"] - stats["distinct"]
    label = processes_label(processes)
    return [
        Sends(
            f"dispatch, {label} → receiver, first to last key ({resent} resent)",
            count,
            sent.seconds,
            processes=processes,
            service_cpu_seconds=cpu,
            sends_in_cpu_window=count - sent_before,
        ),
        Sends(
            f"dispatch, {label}, first receipt to every result recorded",
            count,
            recorded_at - stats["first"],
            processes=processes,
            recorded=True,
        ),
    ]


def _service(
    name: str, bootstrap: str, database_url: str, processes: int
) -> AbstractAsyncContextManager[list[ServiceProcess]]:
    env = {
        "CLOSELOOP_KAFKA_BOOTSTRAP": bootstrap,
        "CLOSELOOP_KAFKA_IDEMPOTENCE": "false",
        "CLOSELOOP_DATABASE_URL": database_url,
        "CLOSELOOP_ADMIN_TOKEN": "bench",
        "CLOSELOOP_DISPATCH_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
    }
    return replicas(name, "services.dispatch", env, processes)


async def _store_channel(settings: DispatchSettings, name: str, url: str) -> None:
    engine = create_engine(settings)
    try:
        async with create_sessions(engine)() as session, session.begin():
            store = DispatchStore(session, settings.schema_name)
            await store.insert_channel(name, "webhook", {"url": url}, {"secret": "bench"}, None)
    finally:
        await engine.dispose()


async def _every_send_recorded(settings: DispatchSettings, count: int, within: float) -> None:
    engine = create_engine(settings)
    query = text(f"SELECT count(*) FROM {settings.schema_name}.sends WHERE status = 'sent'")
    deadline = time.monotonic() + within
    try:
        while True:
            async with engine.connect() as connection:
                sent = (await connection.execute(query)).scalar_one()
            if sent >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the ledger records {sent} of {count} sends as sent")
            await asyncio.sleep(0.05)
    finally:
        await engine.dispose()


@contextmanager
def _profiled(process: ServiceProcess) -> Iterator[None]:
    """py-spy on the dispatch process while it sends, when CLOSELOOP_BENCH_PROFILE names a file."""
    output = os.environ.get("CLOSELOOP_BENCH_PROFILE")
    if not output or process.pid is None:
        yield
        return
    py_spy = Path(sys.executable).with_name("py-spy")
    command = [str(py_spy), "record", "--pid", str(process.pid), "--rate", "200"]
    if output.endswith(".txt"):
        command += ["--format", "raw"]
    profiler = subprocess.Popen([*command, "-o", output], stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(30)


# The run


async def run(bootstrap: str, database_url: str, dsn: str, count: int) -> list[Rate]:
    run_id = uuid.uuid4().hex[:8]
    settings = DispatchSettings()
    concurrency = settings.dispatch_max_in_flight
    receiver = Receiver()
    try:
        http = await raw_http(receiver, "aiohttp", count, concurrency)
        # httpx is shown for comparison only, on fewer requests: it is 10-20x slower.
        slow = await raw_http(receiver, "httpx", min(count, _HTTPX_REQUESTS), concurrency)
        ledger = await raw_ledger(dsn, count)
        sends = [
            rate
            for processes in (1, 2)
            for rate in await dispatch_rates(
                bootstrap, database_url, receiver, count, f"{run_id}p{processes}", processes
            )
        ]
    finally:
        await receiver.aclose()
    return [http, slow, ledger, *sends]


def _sends_to_receiver(rates: list[Rate]) -> list[Sends]:
    return [rate for rate in rates if isinstance(rate, Sends) and not rate.recorded]


def ratios(rates: list[Rate]) -> list[Ratio]:
    """Against the issue's target. The ratio to the raw ceilings is in the summary table; it
    has no target (the issue sets none), it says how far the service is from the client alone."""
    return [
        Ratio(
            f"dispatch ({processes_label(sent.processes)}) sends/s / {TARGET_SENDS_PER_SECOND:,}",
            sent.per_second / TARGET_SENDS_PER_SECOND,
            1.0,
        )
        for sent in _sends_to_receiver(rates)
    ]


def figures(rates: list[Rate], _: Ceilings) -> list[Figure]:
    """Dispatch against its own raw ceilings, measured in this scenario: the HTTP client on
    the same receiver and ledger-shaped writes."""
    http, _httpx, ledger = rates[:3]
    ceiling = min(http, ledger, key=lambda rate: rate.per_second)
    targets = (Target(TARGET_SENDS_PER_SECOND),)
    computed = [
        Figure("dispatch", "raw aiohttp POST to the receiver", http.per_second, "requests/s"),
        Figure("dispatch", "raw asyncpg ledger writes", ledger.per_second, "sends/s"),
    ]
    for rate in rates[3:]:
        if not isinstance(rate, Sends):
            continue
        label = processes_label(rate.processes)
        if rate.recorded:
            computed.append(
                Figure(
                    "dispatch",
                    f"sends with every result recorded, {label}",
                    rate.per_second,
                    "sends/s",
                )
            )
        else:
            computed.append(
                Figure(
                    "dispatch",
                    f"sends to the webhook receiver, {label}",
                    rate.per_second,
                    "sends/s",
                    "min raw HTTP/ledger",
                    ceiling.per_second,
                    targets,
                )
            )
    return computed


def report(rates: list[Rate]) -> None:
    computed = ratios(rates)
    print_table("Dispatch send throughput (webhook)", rates, computed)
    for sent in _sends_to_receiver(rates):
        if sent.cpu_us_per_send:
            print(
                f"CPU, dispatch {processes_label(sent.processes)}: {sent.cpu_us_per_send:.0f} µs "
                f"per send ({sent.service_cpu_seconds:.2f} s for {sent.sends_in_cpu_window:,})"
            )
    print(f"results: {save('dispatch', rates, computed)}")


async def _subprocess(*arguments: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.dispatch", *arguments, cwd=_REPO
    )
    if await process.wait() != 0:
        raise RuntimeError(f"python -m bench.dispatch {' '.join(arguments)} failed")


def _main(arguments: list[str]) -> None:
    command, *rest = arguments
    main: Callable[[], Coroutine[Any, Any, None]]
    if command == "post":
        client, port, count, concurrency = rest
        post = _CLIENTS[client]
        main = lambda: post(int(port), int(count), int(concurrency))  # noqa: E731
    else:
        raise SystemExit(
            "usage: python -m bench.dispatch post httpx|aiohttp PORT COUNT CONCURRENCY"
        )
    uvloop.run(main())


if __name__ == "__main__":
    _main(sys.argv[1:])

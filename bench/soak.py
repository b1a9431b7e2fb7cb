"""Soak: the whole loop at a constant load for a long time; do tables, memory and lag stay flat?

`python -m bench.soak [--minutes 30] [--rate 100] [--people 2000]` (`make soak`; not part of
`make test`). The seven services run as in `python -m bench loop` on a broker and a database of
their own. A fixed population of `--people` is tracked at `--rate` behaviours a second, round
robin, for `--minutes`; each behaviour enters a journey (re-entry always) that sends a webhook to
the bench receiver, so every stage of the loop writes rows: behaviours, profile events, runs,
sends, touches, inbox ids. Every retention period is shortened to a sixth of the run (at
least `MIN_KEEP_SECONDS`; `--keep-seconds` to choose), so what is deleted catches up with what
is written well within it; PostgreSQL's `autovacuum_naptime` is shortened with them (5 s).

Every `SAMPLE_SECONDS` it records the size of every table (`pg_total_relation_size`: heap,
indexes, TOAST), the RSS of every process (each service with its workers, the broker,
PostgreSQL with all its backends) and each consumer group's lag (end offsets minus committed
offsets, over its topics). They go to bench/results/soak.csv (one row per sample and series)
and soak.png. The first half of the run is the warm-up; over the second half a least-squares
line is fitted to each series, and a series is flat when the growth that line predicts over
the second half is at most `FLAT_SHARE` of the series' mean, or under its kind's floor
(`FLAT_FLOORS`: noise no one would call growth). The verdict is printed per kind; the exit code
is 1 when any series is not flat, but for those `EXPECTED_GROWTH` explains (the embedded
broker's memory). PostgreSQL's memory is its processes' PSS added up (see `_rss`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import csv
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx
import numpy as np
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.loop import loop_services
from bench.receiver import Receiver
from bench.report import RESULTS_DIR, StackProcesses, process_tree
from libs.common import topics
from libs.devstack import ServiceProcess
from libs.devstack.scratch import scratch_stack

SAMPLE_SECONDS = 10.0
MIN_KEEP_SECONDS = 30.0
FLAT_SHARE = 0.10
# The periods are shortened from days to minutes; autovacuum's nap (a minute by default, nothing
# against days) is shortened with them, or the space deletes free is reused only a minute late.
AUTOVACUUM = ("autovacuum_naptime=5s",)
FLAT_FLOORS = {"table_bytes": 1024 * 1024, "rss_bytes": 20 * 1024 * 1024, "lag_events": 1_000}
# Series expected to grow, and why: printed, not held against the verdict.
EXPECTED_GROWTH = {
    ("rss_bytes", "broker"): "the embedded broker keeps every message in memory and enforces no "
    "retention (a topic made with retention.ms=5000 still serves its first records 15 s on); "
    "a Kafka broker deletes old segments",
}
# A series of its own: many tables each growing under the floor still add up.
ALL_TABLES = "all tables"
_ADMIN_TOKEN = "bench"
_EVENT = "soak_visit"
_CONCURRENCY = 16
_MB = 1024 * 1024


@dataclass(frozen=True)
class Point:
    """One value of one series at one moment: `kind` is table_bytes, rss_bytes or lag_events."""

    seconds: float
    kind: str
    name: str
    value: float


@dataclass(frozen=True)
class Trend:
    kind: str
    name: str
    mean: float
    growth: float  # what the fitted line adds over the second half

    @property
    def flat(self) -> bool:
        return self.growth <= max(FLAT_SHARE * self.mean, FLAT_FLOORS[self.kind])


def short_retention(keep_seconds: float) -> dict[str, str]:
    """Every period `keep_seconds` (the topics' half of it, the inbox's whole: it must be
    longer), and each retention pass every few seconds, so the soak sees them work."""
    days = str(keep_seconds / 86_400)
    return {
        "CLOSELOOP_TOPIC_RETENTION_HOURS": str(keep_seconds / 2 / 3_600),
        "CLOSELOOP_INBOX_RETENTION_HOURS": str(keep_seconds / 3_600),
        "CLOSELOOP_RETENTION_INTERVAL_S": "5",
        "CLOSELOOP_SEGMENT_BEHAVIOUR_RETENTION_DAYS": days,
        "CLOSELOOP_PROFILE_EVENT_RETENTION_DAYS": days,
        "CLOSELOOP_JOURNEY_RUN_RETENTION_DAYS": days,
        "CLOSELOOP_JOURNEY_MESSAGE_RETENTION_DAYS": days,
        "CLOSELOOP_JOURNEY_DECISION_RETENTION_DAYS": days,
        "CLOSELOOP_JOURNEY_PRIOR_REFIT_INTERVAL_S": "15",
        "CLOSELOOP_DISPATCH_SEND_RETENTION_DAYS": days,
        "CLOSELOOP_ATTRIBUTION_TOUCH_RETENTION_DAYS": days,
        "CLOSELOOP_CONTENT_DECISION_RETENTION_DAYS": days,
    }


async def soak(minutes: float, rate: int, people: int, keep: float) -> list[Point]:
    print(
        f"soak: {rate}/s over {people:,} people for {minutes:g} min; every period {keep:.0f} s, "
        f"a sample every {SAMPLE_SECONDS:.0f} s",
        flush=True,
    )
    async with (
        scratch_stack("closeloop-soak-", postgres_options=AUTOVACUUM) as (broker, database),
        loop_services(broker.bootstrap, database.url, short_retention(keep)) as services,
    ):
        receiver = Receiver()
        try:
            write_key = await _define(services, receiver.url)
            stack = StackProcesses(broker.bootstrap, database.dsn)
            load = asyncio.create_task(
                _constant_load(services["ingest"].url, write_key, rate, people, minutes * 60)
            )
            try:
                return await _sample_while(load, services, stack, database.dsn, broker.bootstrap)
            finally:
                load.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await load
        finally:
            await receiver.aclose()


async def _define(services: Mapping[str, ServiceProcess], receiver_url: str) -> str:
    """A webhook channel to the receiver, its template, a journey every visit enters; a
    source, whose write key is returned."""
    headers = {"Authorization": f"Bearer {_ADMIN_TOKEN}"}

    async def call(service: str, path: str, body: Any) -> Any:
        async with httpx.AsyncClient(base_url=services[service].url, headers=headers) as client:
            response = await client.post(path, json=body, timeout=30)
        if response.status_code >= 300:
            raise RuntimeError(f"{service} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    config = {"url": receiver_url, "secret": "s"}
    await call("dispatch", "/channels", {"name": "webhook", "kind": "webhook", "config": config})
    template = {"id": "tpl_soak", "name": "soak", "channel": "webhook"}
    await call("content", "/templates", {**template, "variants": [{"id": "only", "payload": {}}]})
    journey = {
        "id": "jrn_soak",
        "name": "soak",
        "entry": {"event": _EVENT},
        "reentry": {"rule": "always"},
        "start": "hook",
        "nodes": {"hook": {"type": "send", "channel": "webhook", "template_id": "tpl_soak"}},
    }
    await call("journey", "/journeys", journey)
    await call("journey", "/journeys/jrn_soak/publish", None)
    source = await call("ingest", "/sources", {"name": "soak"})
    write_key: str = source["write_key"]
    return write_key


async def _constant_load(
    ingest: str, write_key: str, rate: int, people: int, seconds: float
) -> None:
    """`rate` tracks a second, the people in turn, on a fixed schedule, for `seconds`; a track
    still not sent when the time is up is not sent (the achieved rate is printed)."""
    headers = {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}
    limit = asyncio.Semaphore(_CONCURRENCY)
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    async with (
        aiohttp.ClientSession(base_url=ingest, headers=headers) as session,
        asyncio.TaskGroup() as tasks,
    ):
        while (due := start + sent / rate) < start + seconds:
            await asyncio.sleep(max(0.0, due - loop.time()))
            await limit.acquire()
            if loop.time() >= start + seconds:
                limit.release()
                break
            tasks.create_task(_track(session, limit, f"soak_{sent % people}", sent))
            sent += 1
    print(f"soak: {sent:,} tracks sent, {sent / seconds:,.1f}/s of {rate}/s asked", flush=True)


async def _track(
    session: aiohttp.ClientSession, limit: asyncio.Semaphore, user_id: str, number: int
) -> None:
    try:
        body = {"userId": user_id, "event": _EVENT, "properties": {"n": number}}
        async with session.post("/v1/track", json=body) as response:
            if response.status != 200:
                raise RuntimeError(f"ingest answered {response.status}: {await response.text()}")
    finally:
        limit.release()


async def _sample_while(
    load: asyncio.Task[None],
    services: Mapping[str, ServiceProcess],
    stack: StackProcesses,
    dsn: str,
    bootstrap: str,
) -> list[Point]:
    points: list[Point] = []
    start = time.monotonic()
    connection = await asyncpg.connect(dsn)
    try:
        while True:
            seconds = time.monotonic() - start
            sample = [
                *(Point(seconds, "table_bytes", n, v) for n, v in await _table_sizes(connection)),
                *(Point(seconds, "rss_bytes", n, v) for n, v in _rss(services, stack)),
                *(Point(seconds, "lag_events", n, v) for n, v in await _lags(bootstrap)),
            ]
            sample.append(Point(seconds, "table_bytes", ALL_TABLES, _total(sample, "table_bytes")))
            points.extend(sample)
            print(f"soak: {seconds / 60:5.1f} min  {_glance(sample)}", flush=True)
            if load.done():
                load.result()  # a load that failed fails the soak
                return points
            await asyncio.wait({load}, timeout=SAMPLE_SECONDS)
    finally:
        await connection.close()


async def _table_sizes(connection: asyncpg.Connection[asyncpg.Record]) -> list[tuple[str, int]]:
    """`<service>.<table>` (the schema's run suffix dropped) and its size with indexes."""
    rows = await connection.fetch(
        "SELECT n.nspname AS schema, c.relname AS table, pg_total_relation_size(c.oid) AS size "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'public') "
        "AND n.nspname NOT LIKE 'pg_toast%'"
    )
    return [(f"{row['schema'].split('_loop_')[0]}.{row['table']}", row["size"]) for row in rows]


def _rss(services: Mapping[str, ServiceProcess], stack: StackProcesses) -> list[tuple[str, int]]:
    """Each process tree's resident memory. PostgreSQL's is its PSS: RSS added up over the
    postmaster and its backends counts the shared buffers once for every backend that touched
    them, which grows with the backends' use of the same memory."""
    pids = [(name, service.pid) for name, service in services.items()] + stack.pids()
    return [(name, _tree_memory(pid, proportional=name == "PostgreSQL")) for name, pid in pids]


def _tree_memory(pid: int | None, *, proportional: bool) -> int:
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(psutil.Error):  # a backend may exit between the two calls
            total += member.memory_full_info().pss if proportional else member.memory_info().rss
    return total


async def _lags(bootstrap: str) -> list[tuple[str, int]]:
    """Each consumer group's lag: end offsets minus its committed offsets, over the partitions
    it has committed on (the embedded broker needs the partitions named)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    ends = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await ends.start()
    try:
        partitions = [
            TopicPartition(topic, partition)
            for topic in topics.ALL
            for partition in ends.partitions_for_topic(topic) or ()
        ]
        # Committed offsets first, end offsets after: read the other way round, commits made
        # in between would pass the ends read before them.
        committed = {
            group: await admin.list_consumer_group_offsets(group, partitions=partitions)
            for group, *_ in await admin.list_consumer_groups()
        }
        latest = await ends.end_offsets(partitions)
        return [
            (
                group.removeprefix("closeloop-").split("_loop_")[0],
                # The embedded broker's end offsets can trail a commit made just before by a few.
                sum(max(0, latest[tp] - at.offset) for tp, at in offsets.items() if at.offset >= 0),
            )
            for group, offsets in committed.items()
        ]
    finally:
        await ends.stop()
        await admin.close()


def _total(sample: Sequence[Point], kind: str) -> float:
    return sum(p.value for p in sample if p.kind == kind and p.name != ALL_TABLES)


def _glance(sample: Sequence[Point]) -> str:
    tables = _total(sample, "table_bytes") / _MB
    rss = sum(p.value for p in sample if p.kind == "rss_bytes") / _MB
    lag = sum(p.value for p in sample if p.kind == "lag_events")
    return f"tables {tables:,.1f} MB  RSS {rss:,.0f} MB  lag {lag:,.0f}"


def trends(points: Sequence[Point]) -> list[Trend]:
    """Each series' fitted growth over the second half of the run (the first is the warm-up)."""
    half = max(p.seconds for p in points) / 2
    series: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for point in points:
        if point.seconds >= half:
            series.setdefault((point.kind, point.name), []).append((point.seconds, point.value))
    found = []
    for (kind, name), values in sorted(series.items()):
        x, y = np.array(values).T
        slope = float(np.polyfit(x, y, 1)[0]) if len(values) > 1 else 0.0
        found.append(Trend(kind, name, float(y.mean()), slope * float(x.max() - x.min())))
    return found


def write_csv(points: Sequence[Point], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["seconds", "kind", "name", "value"])
        writer.writerows((f"{p.seconds:.1f}", p.kind, p.name, p.value) for p in points)


def plot(points: Sequence[Point], path: Path) -> None:
    """Table sizes, RSS and lag over time, one panel each; the warm-up shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("table_bytes", "table size, MB", _MB),
        ("rss_bytes", "RSS (PostgreSQL: PSS), MB", _MB),
        ("lag_events", "consumer lag, events", 1),
    ]
    figure, axes = plt.subplots(len(panels), 1, figsize=(11, 13), sharex=True)
    half = max(p.seconds for p in points) / 2 / 60
    for axis, (kind, label, unit) in zip(axes, panels, strict=True):
        names = sorted({p.name for p in points if p.kind == kind})
        for name in names:
            mine = [p for p in points if p.kind == kind and p.name == name]
            axis.plot([p.seconds / 60 for p in mine], [p.value / unit for p in mine], label=name)
        axis.axvspan(0, half, color="0.92", label="warm-up")
        axis.set_ylabel(label)
        axis.legend(fontsize=6, ncol=4, loc="upper left")
    axes[-1].set_xlabel("minutes")
    figure.suptitle("Soak: sizes, memory and lag at a constant load")
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def verdict(found: Sequence[Trend]) -> bool:
    """Print which series grew over the second half; whether every one was flat."""
    print(
        f"flat: growth of the fitted line over the second half at most {FLAT_SHARE:.0%} of the "
        f"mean, or under {FLAT_FLOORS['table_bytes'] // _MB} MB (tables), "
        f"{FLAT_FLOORS['rss_bytes'] // _MB} MB (RSS), {FLAT_FLOORS['lag_events']:,} events (lag)"
    )
    for kind in FLAT_FLOORS:
        mine = [trend for trend in found if trend.kind == kind]
        growing = [trend for trend in mine if not trend.flat]
        print(f"  {kind}: {len(mine) - len(growing)} of {len(mine)} flat")
        for trend in growing:
            why = EXPECTED_GROWTH.get((trend.kind, trend.name))
            print(
                f"    growing: {trend.name}: +{trend.growth:,.0f}, mean {trend.mean:,.0f}"
                + (f" (expected: {why})" if why else "")
            )
    return all(trend.flat or (trend.kind, trend.name) in EXPECTED_GROWTH for trend in found)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=100, help="behaviours a second")
    parser.add_argument("--people", type=int, default=2_000)
    parser.add_argument(
        "--keep-seconds",
        type=float,
        help="every retention period (default: a sixth of the run, at least 30 s); longer than "
        "the run to see the tables grow without retention",
    )
    arguments = parser.parse_args(argv)
    keep = arguments.keep_seconds or max(MIN_KEEP_SECONDS, arguments.minutes * 60 / 6)
    points = asyncio.run(soak(arguments.minutes, arguments.rate, arguments.people, keep))
    write_csv(points, RESULTS_DIR / "soak.csv")
    plot(points, RESULTS_DIR / "soak.png")
    print(f"soak: {RESULTS_DIR / 'soak.csv'} and {RESULTS_DIR / 'soak.png'}")
    return 0 if verdict(trends(points)) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""The profile service's processing rate: ingest calls in, committed profile state and events out.

Publishes a mix of track, page and identify calls for 1,000 people (each seen first
anonymously, then identified, so merges happen too) to closeloop.ingest.v1, emptied first, then
starts the service as it runs (`python -m services.profile`: its consumer, handler and outbox
relay) as one process, then as two replicas of one deployment on new calls. The clock runs from
the first offset commit of the service's consumer group on closeloop.ingest.v1 after the group
has settled (every process a member, the group stable) until every call is committed: the
group's join and its first rebalance are not the work measured. The service commits after
every batch here (not at most once a second, its default), so that the offsets time the work
exactly. The services' CPU per event in that window is printed too: the figure that depends
least on what else the machine runs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench import raw
from bench.progress import PROGRESS
from bench.raw import Ceilings
from bench.replicas import replicas
from bench.report import Rate, Ratio, print_table, processes_label, save, services_cpu_seconds
from bench.summary import Figure, Target
from libs.common import topics
from libs.common.bus import ensure_topics
from libs.common.events import Event, IngestIdentify, IngestPage, IngestTrack, encode
from libs.devstack import ServiceProcess

TARGET_EVENTS_PER_SECOND = 20_000
_CATEGORIES = ("tea", "teaware", "snacks", "gifts")
_OFFSETS_EVERY_SECONDS = 0.02
_INGEST_PARTITIONS = [TopicPartition(topics.INGEST, partition) for partition in range(12)]


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


@dataclass(frozen=True)
class Processing(Rate):
    """Calls committed by `processes` profile processes; their CPU in the same window."""

    processes: int = 1
    service_cpu_seconds: float = 0.0

    @property
    def cpu_us_per_event(self) -> float:
        return self.service_cpu_seconds / self.count * 1e6 if self.count else 0.0


async def run(bootstrap: str, database_url: str, dsn: str, count: int) -> list[Rate]:
    run_id = uuid.uuid4().hex[:8]
    await ensure_topics(bootstrap, list(topics.ALL), 12, 1)
    return [
        await profile_rate(bootstrap, database_url, count, f"{run_id}p{processes}", processes)
        for processes in (1, 2)
    ]


async def profile_rate(
    bootstrap: str, database_url: str, count: int, run_id: str, processes: int
) -> Processing:
    """The service as it runs, on calls published before it started."""
    name = f"bench_profile_{run_id}"
    env = {
        "CLOSELOOP_KAFKA_BOOTSTRAP": bootstrap,
        "CLOSELOOP_KAFKA_IDEMPOTENCE": "false",
        "CLOSELOOP_DATABASE_URL": database_url,
        "CLOSELOOP_ADMIN_TOKEN": "bench",
        # Offsets committed after every batch, so that they are an exact clock. At full load
        # this measured the same as the default (at most once a second): 21,262-22,421 events/s
        # with 2 replicas against 20,309-21,257, alternating.
        "CLOSELOOP_KAFKA_COMMIT_INTERVAL_MS": "0",
    }
    async with replicas(name, "services.profile", env, processes) as services:
        await services[0].migrate()
        await raw.empty_topic(bootstrap, topics.INGEST)  # not what other scenarios left there
        calls = [encode(event) for event in ingest_calls(count, run_id)]
        await raw.produce(bootstrap, topics.INGEST, calls)
        for process in services:
            process.start()
        return await _committed(bootstrap, f"closeloop-{name}", services, count)


async def _committed(
    bootstrap: str, group: str, services: Sequence[ServiceProcess], count: int
) -> Processing:
    """Poll the group's committed offsets on closeloop.ingest.v1 (the topic starts empty, so
    their sum is the calls committed) from the first commit until all `count` are."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await _settled(admin, group, len(services), within=120)
        settled = await _committed_at_least(admin, group, 0, within=1)
        first, first_at = await _committed_at_least(
            admin, group, min(settled[0] + 1, count), within=120
        )
        cpu_before = services_cpu_seconds(services)
        last, last_at = await _committed_at_least(admin, group, count, within=600)
        cpu = services_cpu_seconds(services) - cpu_before
    finally:
        await admin.close()
    label = processes_label(len(services))
    return Processing(
        f"profile, {label}: ingest → committed state",
        last - first,
        last_at - first_at,
        processes=len(services),
        service_cpu_seconds=cpu,
    )


async def _settled(admin: AIOKafkaAdminClient, group: str, members: int, within: float) -> None:
    """Once the group is stable with `members` members: every process has its partitions."""
    deadline = time.monotonic() + within
    while True:
        (described,) = await admin.describe_consumer_groups([group])
        (state,) = described.groups
        _, _, stable, _, _, joined = state[:6]
        if stable == "Stable" and len(joined) == members:
            return
        PROGRESS.note(f"waiting for {group} to settle: {stable}, {len(joined)} of {members}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{group} did not settle with {members} members in {within} s")
        await asyncio.sleep(_OFFSETS_EVERY_SECONDS)


async def _committed_at_least(
    admin: AIOKafkaAdminClient, group: str, count: int, within: float
) -> tuple[int, float]:
    deadline = time.monotonic() + within
    while True:
        # Partitions named: the embedded broker closes the connection on a fetch of "all".
        offsets = await admin.list_consumer_group_offsets(group, partitions=_INGEST_PARTITIONS)
        committed = sum(max(position.offset, 0) for position in offsets.values())
        if committed >= count:
            return committed, time.perf_counter()
        PROGRESS.note(f"{committed:,} of {count:,} calls committed")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{group} committed {committed} of {count} calls in {within:.0f} s")
        await asyncio.sleep(_OFFSETS_EVERY_SECONDS)


def _processing(rates: list[Rate]) -> list[Processing]:
    return [rate for rate in rates if isinstance(rate, Processing)]


def ratios(rates: list[Rate]) -> list[Ratio]:
    return [
        Ratio(
            f"profile ({processes_label(rate.processes)}) events/s / {TARGET_EVENTS_PER_SECOND:,}",
            rate.per_second / TARGET_EVENTS_PER_SECOND,
            1.0,
        )
        for rate in _processing(rates)
    ]


def report(rates: list[Rate]) -> None:
    computed = ratios(rates)
    print_table("Profile throughput", rates, computed)
    for rate in _processing(rates):
        print(
            f"CPU, profile {processes_label(rate.processes)}: {rate.cpu_us_per_event:.0f} µs "
            f"per event ({rate.service_cpu_seconds:.2f} s for {rate.count:,})"
        )
    print(f"results: {save('profile', rates, computed)}")


def figures(rates: list[Rate], ceilings: Ceilings) -> list[Figure]:
    """Profile's rate against what any consumer pays at least: raw consume and inbox rows."""
    return [
        Figure(
            "profile",
            f"ingest.v1 → committed profile state, {processes_label(rate.processes)}",
            rate.per_second,
            "events/s",
            "min raw consume/inbox",
            ceilings.consumer.per_second,
            (Target(TARGET_EVENTS_PER_SECOND),),
        )
        for rate in _processing(rates)
    ]

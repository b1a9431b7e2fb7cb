"""Bulk import: a CSV of new customers through ingest's `POST /v1/import`, until every one of
them is a member of a segment that matches them all.

Ingest, profile and segment run as real processes on a broker and a database started for this
scenario (as the loop's are: bench/loop.py), each in a schema of its own. A segment whose rule
is "the trait `plan` exists" is made through segment's API, and one person identified through
`POST /v1/identify` until segment counts them as a member (every consumer has joined its
group). Then a CSV of `count` new customers (`IMPORT_COUNT`, `--import-count`; 100,000 by
default), each identified with four traits (email, first_name, plan, country), is posted in
one request. Measured from the start of the upload:

- until the file is accepted (ingest answers once Kafka has acknowledged every row);
- until profile's store holds all the new profiles (rows of its `profiles` table);
- until segment has every one of them as a member of the segment (end to end);

the counts read from the two schemas every `POLL_SECONDS`, so each time is within that of the
moment. The end-to-end rate is new profiles/s against `TARGET_PROFILES_PER_SECOND`; beside it,
profile's own rate and each part's CPU per new profile. `IMPORT_PG_STATEMENTS=1` also lists
PostgreSQL's costliest statements per new profile (bench/pg_statements.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import csv
import io
import math
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench import pg_statements
from bench.progress import PROGRESS
from bench.raw import Ceilings
from bench.report import (
    Rate,
    Ratio,
    StackProcesses,
    machine_busy_seconds,
    print_table,
    save,
    serving,
    tree_cpu_seconds,
)
from bench.summary import Figure, Target
from libs.common.settings import Settings
from libs.devstack import ServiceProcess, free_port
from libs.devstack.scratch import scratch_stack

TARGET_PROFILES_PER_SECOND = 10_000
DEFAULT_COUNT = 100_000
POLL_SECONDS = 0.5
READY_SECONDS = 180.0  # at most, for the first person to become a member
TIMEOUT_SECONDS = float(os.environ.get("IMPORT_TIMEOUT_SECONDS", 1_200))
SEGMENT_ID = "seg_bench_import"
SEGMENT_RULE = {"trait": "plan", "op": "exists"}
CSV_HEADER = ("userId", "traits.email", "traits.first_name", "traits.plan", "traits.country")
_SERVICES = ("ingest", "profile", "segment")
_ADMIN_TOKEN = "bench"
_PLANS = ("free", "basic", "premium")
_COUNTRIES = ("DE", "FR", "GB", "NL", "SE", "ES", "IT", "PL")
_NAMES = ("Ada", "Bo", "Chen", "Dara", "Emil", "Fatima", "Goran", "Hana", "Ines", "Jonas")
_TARGET = Target(TARGET_PROFILES_PER_SECOND)
_CORES = os.cpu_count() or 1
_STATEMENTS = bool(os.environ.get("IMPORT_PG_STATEMENTS"))


def count_from_env() -> int:
    """The default number of customers: IMPORT_COUNT, else DEFAULT_COUNT."""
    return int(os.environ.get("IMPORT_COUNT", DEFAULT_COUNT))


@dataclass(frozen=True)
class Imported(Rate):
    """`count` new customers imported; `seconds` from the upload's start until segment had all
    of them as members, so `per_second` is the end-to-end rate."""

    accepted_seconds: float = 0.0
    # Until profile's store held all of them; NaN when its table could not be read.
    profile_seconds: float = math.nan
    csv_bytes: int = 0
    rejected: int = 0
    # Per new profile, from the upload's start until all were members: each service, the
    # broker and PostgreSQL.
    cpu_us_per_profile: Mapping[str, float] = field(default_factory=dict)
    # Every core's busy time in the same window, whatever ran on it.
    machine_cpu_us_per_profile: float = math.nan

    @property
    def accepted_per_second(self) -> float:
        return self.count / self.accepted_seconds if self.accepted_seconds > 0 else math.nan

    @property
    def profile_per_second(self) -> float:
        return self.count / self.profile_seconds if self.profile_seconds > 0 else math.nan


def customers_csv(count: int, run_id: str) -> bytes:
    """A header and `count` rows of new customers, each with the four traits."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for i in range(count):
        user_id = f"imp_{run_id}_{i}"
        writer.writerow(
            (
                user_id,
                f"{user_id}@example.com",
                _NAMES[i % len(_NAMES)],
                _PLANS[i % len(_PLANS)],
                _COUNTRIES[i % len(_COUNTRIES)],
            )
        )
    return out.getvalue().encode()


async def run(_bootstrap: str, _database_url: str, _dsn: str, count: int) -> list[Rate]:
    """The import on a broker and a database of its own, started for it (see bench/loop.py)."""
    options = pg_statements.POSTGRES_OPTIONS if _STATEMENTS else ()
    async with scratch_stack("closeloop-bench-import-", postgres_options=options) as (
        broker,
        database,
    ):
        return [await _measure(broker.bootstrap, database.url, database.dsn, count)]


async def _measure(bootstrap: str, database_url: str, dsn: str, count: int) -> Imported:
    run_id = uuid.uuid4().hex[:6]
    async with _services(bootstrap, database_url, run_id) as services:
        write_key = await _define(services)
        body = customers_csv(count, run_id)
        stack = StackProcesses(bootstrap, dsn)
        connection = await asyncpg.connect(dsn)
        try:
            counts = _Counts(connection, services)
            await _first_member(services["ingest"].url, write_key, counts)
            members_before, profiles_before = await counts.read()
            cpu_before = _cpu_seconds(services, stack)
            machine_before = machine_busy_seconds()
            if _STATEMENTS:
                await pg_statements.reset(dsn)
            PROGRESS.say(f"importing {count:,} customers ({len(body) / 1e6:.1f} MB of CSV)")
            started = time.perf_counter()
            upload = asyncio.create_task(_upload(services["ingest"].url, write_key, body))
            profiles_wanted = None if profiles_before is None else profiles_before + count
            waited = await _wait_for(
                counts, members_before + count, profiles_wanted, started, upload
            )
            cpu = _cpu_seconds(services, stack)
            machine = machine_busy_seconds() - machine_before
            if _STATEMENTS:
                costs = await pg_statements.costliest(dsn, count)
                print("PostgreSQL's costliest statements, per new profile:")
                print("\n".join(pg_statements.statement_lines(costs)))
        finally:
            await connection.close()
    accepted_seconds, answer = upload.result()
    members_seconds, profiles_seconds = waited
    return Imported(
        f"import of {count:,} new customers: upload → segment members",
        count,
        members_seconds,
        accepted_seconds=accepted_seconds,
        profile_seconds=profiles_seconds,
        csv_bytes=len(body),
        rejected=int(answer.get("rejected", 0)),
        cpu_us_per_profile={
            name: (used - cpu_before[name]) / count * 1e6 for name, used in cpu.items()
        },
        machine_cpu_us_per_profile=machine / count * 1e6,
    )


@contextlib.asynccontextmanager
async def _services(
    bootstrap: str, database_url: str, run_id: str
) -> AsyncIterator[dict[str, ServiceProcess]]:
    """Ingest, profile and segment, started together, stopped after."""
    logs = Path(tempfile.mkdtemp(prefix="closeloop-bench-import-"))
    env = {
        "CLOSELOOP_KAFKA_BOOTSTRAP": bootstrap,
        "CLOSELOOP_KAFKA_IDEMPOTENCE": "false",
        "CLOSELOOP_DATABASE_URL": database_url,
        "CLOSELOOP_ADMIN_TOKEN": _ADMIN_TOKEN,
        "CLOSELOOP_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "CLOSELOOP_LOG_LEVEL": "WARNING",
    }
    processes = {
        name: ServiceProcess(
            f"{name}_import_{run_id}", f"services.{name}", env, free_port(), log_dir=logs
        )
        for name in _SERVICES
    }
    async with serving(processes, f"import: ingest, profile and segment ready (logs in {logs})"):
        yield processes


async def _define(services: Mapping[str, ServiceProcess]) -> str:
    """The segment every imported customer matches, and a source to import through."""
    headers = {"Authorization": f"Bearer {_ADMIN_TOKEN}"}

    async def call(service: str, path: str, body: Any) -> Any:
        async with httpx.AsyncClient(base_url=services[service].url, headers=headers) as client:
            response = await client.post(path, json=body, timeout=30)
        if response.status_code >= 300:
            raise RuntimeError(f"{service} {path}: {response.status_code} {response.text}")
        return response.json()

    await call(
        "segment",
        "/segments",
        {"id": SEGMENT_ID, "name": "bench import: every customer", "conditions": SEGMENT_RULE},
    )
    source = await call("ingest", "/sources", {"name": "bench import"})
    write_key: str = source["write_key"]
    return write_key


def _basic(write_key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


class _Counts:
    """The segment's members (segment's schema) and profile's profiles (profile's schema)."""

    def __init__(
        self, connection: asyncpg.Connection, services: Mapping[str, ServiceProcess]
    ) -> None:
        self._connection = connection
        self._segment = _schema(services["segment"])
        self._profile = _schema(services["profile"])
        self._profiles_readable = True

    async def read(self) -> tuple[int, int | None]:
        """Members of the segment, and profiles in profile's store (None if unreadable)."""
        members: int = await self._connection.fetchval(
            f"SELECT count(*) FROM {self._segment}.memberships WHERE segment_id = $1", SEGMENT_ID
        )
        profiles: int | None = None
        if self._profiles_readable:
            try:
                profiles = await self._connection.fetchval(
                    f"SELECT count(*) FROM {self._profile}.profiles"
                )
            except asyncpg.UndefinedTableError:
                print(f"import: profile's schema {self._profile} has no profiles table")
                self._profiles_readable = False
        return members, profiles


def _schema(service: ServiceProcess) -> str:
    """The schema a service owns, named after it."""
    return Settings(service_name=service.name).schema_name


async def _first_member(ingest: str, write_key: str, counts: _Counts) -> None:
    """Identify one person (with a plan) until segment has them as a member."""
    deadline = time.monotonic() + READY_SECONDS
    body = {"userId": f"warm_{uuid.uuid4().hex}", "traits": {"plan": "warm-up"}}
    async with httpx.AsyncClient(base_url=ingest, headers=_basic(write_key)) as client:
        response = await client.post("/v1/identify", json=body, timeout=30)
        if response.status_code != 200:
            raise RuntimeError(f"ingest answered {response.status_code}: {response.text}")
    while (await counts.read())[0] == 0:
        PROGRESS.note("warming up: waiting for a first member")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no member in {READY_SECONDS:.0f} s: is the pipeline down?")
        await asyncio.sleep(POLL_SECONDS)


async def _upload(ingest: str, write_key: str, body: bytes) -> tuple[float, dict[str, Any]]:
    """POST the CSV; seconds until ingest answered, and its answer (the import job)."""
    started = time.perf_counter()
    headers = {**_basic(write_key), "Content-Type": "text/csv"}
    async with httpx.AsyncClient(base_url=ingest, headers=headers) as client:
        response = await client.post("/v1/import", content=body, timeout=TIMEOUT_SECONDS)
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"POST /v1/import answered {response.status_code}: {response.text}")
    answer: dict[str, Any] = response.json()
    if answer.get("rejected"):
        print(f"import: {answer['rejected']} rows rejected, first: {answer.get('errors', [])[:3]}")
    return seconds, answer


async def _wait_for(
    counts: _Counts,
    members: int,
    profiles: int | None,
    started: float,
    upload: asyncio.Task[tuple[float, dict[str, Any]]],
) -> tuple[float, float]:
    """Poll until the segment has `members` members: seconds from `started` until then, and
    until profile's store held `profiles` profiles (NaN when it could not be read)."""
    profiles_at = math.nan
    while True:
        polled = time.perf_counter()
        if upload.done() and upload.exception() is not None:
            upload.result()  # the upload failed: nothing more will come
        now_members, now_profiles = await counts.read()
        reached = profiles is not None and now_profiles is not None and now_profiles >= profiles
        if reached and math.isnan(profiles_at):
            profiles_at = polled - started
        if now_members >= members:
            if not upload.done():
                await upload
            return polled - started, profiles_at
        elapsed = polled - started
        PROGRESS.note(
            f"{elapsed:.0f} s: {now_members:,} of {members:,} members, "
            f"{'?' if now_profiles is None else format(now_profiles, ',')} profiles"
            + (", file accepted" if upload.done() else ", uploading")
        )
        if elapsed > TIMEOUT_SECONDS:
            raise TimeoutError(f"{now_members:,} of {members:,} members after {elapsed:.0f} s")
        await asyncio.sleep(max(0.0, POLL_SECONDS - (time.perf_counter() - polled)))


def _cpu_seconds(services: Mapping[str, ServiceProcess], stack: StackProcesses) -> dict[str, float]:
    return {
        **{name: tree_cpu_seconds(service.pid) for name, service in services.items()},
        **stack.cpu_seconds(),
    }


def _imports(rates: list[Rate]) -> list[Imported]:
    return [rate for rate in rates if isinstance(rate, Imported)]


def ratios(rates: list[Rate]) -> list[Ratio]:
    return [
        Ratio(
            f"import end to end profiles/s / {TARGET_PROFILES_PER_SECOND:,}",
            rate.per_second / TARGET_PROFILES_PER_SECOND,
            1.0,
        )
        for rate in _imports(rates)
    ]


def report(rates: list[Rate]) -> None:
    computed = ratios(rates)
    print_table("Bulk import (ingest → profile → segment)", rates, computed)
    for rate in _imports(rates):
        verdict = _TARGET.met_by(rate.per_second, None)
        print(
            f"{rate.count:,} new customers ({rate.csv_bytes / 1e6:.1f} MB of CSV, "
            f"{rate.rejected} rows rejected):\n"
            f"  file accepted          {rate.accepted_seconds:7.1f} s  "
            f"{rate.accepted_per_second:9,.0f} rows/s\n"
            f"  in profile's store     {rate.profile_seconds:7.1f} s  "
            f"{rate.profile_per_second:9,.0f} new profiles/s\n"
            f"  segment members (end to end) {rate.seconds:5.1f} s  "
            f"{rate.per_second:9,.0f} new profiles/s   target {_TARGET.describe('/s')}: "
            f"{'met' if verdict else 'NOT met'}"
        )
        cpu = ", ".join(f"{name} {us:,.0f}" for name, us in rate.cpu_us_per_profile.items())
        total = sum(rate.cpu_us_per_profile.values())
        print(
            f"  CPU µs per new profile, upload start → all members: {cpu}; all {total:,.0f} "
            f"(at most {_CORES * 1e6 / total:,.0f} new profiles/s on {_CORES} cores); "
            f"whole machine {rate.machine_cpu_us_per_profile:,.0f}"
            if total > 0
            else f"  CPU µs per new profile: {cpu}"
        )
    print(f"results: {save('import', rates, computed)}")


def figures(rates: list[Rate], _: Ceilings) -> list[Figure]:
    """The end-to-end rate against its target, beside the upload's and profile's rates."""
    out: list[Figure] = []
    for rate in _imports(rates):
        scenario = f"import ({rate.count:,} new customers)"
        out += [
            Figure(scenario, "file accepted", rate.accepted_per_second, "rows/s"),
            Figure(scenario, "in profile's store", rate.profile_per_second, "profiles/s"),
            Figure(
                scenario,
                "end to end, upload → segment members",
                rate.per_second,
                "profiles/s",
                targets=(_TARGET,),
            ),
            *(
                Figure(scenario, f"CPU, {name}", us, "µs/profile")
                for name, us in rate.cpu_us_per_profile.items()
            ),
            Figure(scenario, "CPU, whole machine", rate.machine_cpu_us_per_profile, "µs/profile"),
        ]
    return out

"""Faults under steady load through the whole loop, then a reconciliation: nothing lost, nothing
duplicated, counted raw at receivers that do not deduplicate.

New people arrive at a fixed rate (each one Segment identify that puts them in a segment whose
journey sends them a webhook, an email and an SMS), and every other person later buys, which a
conversion definition credits to one of those messages. Meanwhile, in turn: SIGKILL and restart
each of the seven services, restart PostgreSQL on the same port, silence it for 10 s at a TCP
proxy (connections open, nothing passing), cut the broker off for 10 s at another, put every
provider in a storm (5% server errors, 5% 429s with Retry-After) for 10 s, and put poison records
on every consumed topic. Then the load stops, the loop drains, and every accepted call must have
had exactly one effect of each kind (see reconcile.py), every message must have ended sent once
or failed with a reason, and every poison record must be in the DLQ once per consumer group that
handles its type. See docs/fault-injection.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
import pytest

from tests.integration.chaos.conftest import (
    DISPATCH_IN_FLIGHT,
    DISPATCH_IN_FLIGHT_SETTING,
    EMAIL_FROM,
    SIZE,
    Chaos,
)
from tests.integration.chaos.load import Load
from tests.integration.chaos.poison import Poison
from tests.integration.chaos.reconcile import (
    CHANNELS,
    Observed,
    observe,
    raw_duplicates,
    reconcile,
    report,
    trail,
)
from tests.integration.closed_loop.harness import ClosedLoop
from tests.integration.dispatch.providers import Storm
from tests.integration.support import wait_for

# pytest-timeout's alarm only fails whichever task it lands in on an asyncio loop; the test's own
# deadline (asyncio.timeout) is what ends a run that hangs. Setup needs its share on top.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.chaos,
    pytest.mark.timeout(SIZE.deadline + 300),
]

SERVICES = ("ingest", "profile", "segment", "journey", "content", "dispatch", "attribution")
CONSUMERS = SERVICES[1:]
CONVERSION = "chaos_order"
_RECOVERY_S = 120.0
_DRAIN_S = 120.0
# The drain gets this many seconds more per person: a slow machine may have a backlog to work off.
_DRAIN_PER_PERSON_S = 0.05

KILL_DISPATCH = "kill dispatch"
# The dead letters of the poison are looked for this long after the drain.
_DEAD_LETTERS_S = 60.0


@dataclass
class Run:
    """What the faults did, beyond the load's own counts: when each was injected, the storms
    the providers went through, the poison put on the topics."""

    chaos: Chaos
    poison: Poison
    injected: list[tuple[float, str]] = field(default_factory=list)
    storms: dict[str, Storm] = field(default_factory=dict)


Fault = Callable[[Run], Awaitable[None]]


def _kill(name: str) -> Fault:
    async def inject(run: Run) -> None:
        process = run.chaos.loop.processes[name]
        code = await process.kill()
        assert code == -9, f"{name} exited with {code}, not by SIGKILL"
        process.start()
        await process.wait_ready(_RECOVERY_S)

    return inject


async def _restart_postgres(run: Run) -> None:
    await run.chaos.postgres.stop()
    await run.chaos.postgres.start()


async def _cut_broker(run: Run) -> None:
    reset = await run.chaos.proxy.cut()
    assert reset > 0, "no connection went through the proxy: the broker is not behind it"
    await asyncio.sleep(SIZE.broker_cut)  # holds the fault; not synchronisation
    await run.chaos.proxy.restore()


async def _silence_database(run: Run) -> None:
    """PostgreSQL takes connections and answers nothing, as a hung host does: every statement
    waits until its `CLOSELOOP_DATABASE_COMMAND_TIMEOUT_MS` (3 s here) gives up on it."""
    await run.chaos.database_proxy.freeze()
    try:
        await asyncio.sleep(SIZE.database_silence)  # holds the fault; not synchronisation
    finally:
        await run.chaos.database_proxy.thaw()


async def _provider_storm(run: Run) -> None:
    """Every provider answers 1 request in 20 with a server error and 1 in 20 with a 429 and
    `Retry-After: 1` (the mail server: 451 and 450) while the storm lasts: `SIZE.storm`
    seconds, and on until each has refused at least one of each (the loop may be slow to send
    again after the fault before)."""
    providers = run.chaos.loop.providers
    storms = {channel: run.storms.setdefault(channel, Storm()) for channel in CHANNELS}
    refused_before = {channel: (s.errors, s.throttled) for channel, s in storms.items()}
    providers.storms.update(storms)

    async def each_refused_some() -> bool:
        return all(
            storm.errors > refused_before[channel][0]
            and storm.throttled > refused_before[channel][1]
            for channel, storm in storms.items()
        )

    try:
        await asyncio.sleep(SIZE.storm)  # holds the fault; not synchronisation
        await wait_for(each_refused_some, within=_RECOVERY_S, what="every provider to refuse")
    finally:
        for channel in CHANNELS:
            providers.storms.pop(channel, None)


async def _poison(run: Run) -> None:
    await run.poison.inject(run.chaos.stack.kafka_bootstrap)


FAULTS: list[tuple[str, Fault]] = [
    *((f"kill {name}", _kill(name)) for name in SERVICES),
    ("restart postgres", _restart_postgres),
    (f"silence postgres {SIZE.database_silence:g}s", _silence_database),
    (f"cut broker {SIZE.broker_cut:g}s", _cut_broker),
    (f"provider storm {SIZE.storm:g}s", _provider_storm),
    ("poison records", _poison),
]


async def _campaign(loop: ClosedLoop, run: str) -> str:
    """A segment of this run's people, a webhook, an email and an SMS to each, and a conversion
    crediting the last of them a buyer got before buying."""
    segment_id, template_id, journey_id = f"seg_chaos_{run}", f"tpl_chaos_{run}", f"jrn_chaos_{run}"
    await loop.call(
        "segment",
        "POST",
        "/segments",
        json={
            "id": segment_id,
            "name": "chaos",
            "conditions": {"trait": "chaos_run", "value": run},
        },
    )
    await loop.call(
        "content",
        "POST",
        "/templates",
        json={
            "id": template_id,
            "name": "chaos",
            "channel": "webhook",
            "variants": [{"id": "only", "payload": {"user": "{{ profile.traits.chaos_user }}"}}],
        },
    )
    await loop.call(
        "content",
        "POST",
        "/templates",
        json={
            "id": f"{template_id}_mail",
            "name": "chaos mail",
            "channel": "email",
            "variants": [
                {
                    "id": "only",
                    "subject": "Hello {{ profile.traits.chaos_user }}",
                    "html": "<p>For {{ profile.traits.chaos_user }}</p>",
                }
            ],
        },
    )
    await loop.call(
        "content",
        "POST",
        "/templates",
        json={
            "id": f"{template_id}_sms",
            "name": "chaos sms",
            "channel": "sms",
            "variants": [{"id": "only", "text": "For {{ profile.traits.chaos_user }}"}],
        },
    )
    await loop.call(
        "journey",
        "POST",
        "/journeys",
        json={
            "id": journey_id,
            "name": "chaos",
            "entry": {"segment": segment_id},
            "start": "hook",
            "nodes": {
                "hook": {
                    "type": "send",
                    "channel": "webhook",
                    "template_id": template_id,
                    "next": "mail",
                },
                "mail": {
                    "type": "send",
                    "channel": "email",
                    "template_id": f"{template_id}_mail",
                    "next": "text",
                },
                "text": {"type": "send", "channel": "sms", "template_id": f"{template_id}_sms"},
            },
        },
    )
    await loop.call("journey", "POST", f"/journeys/{journey_id}/publish")
    await loop.call(
        "attribution",
        "POST",
        "/conversions",
        json={
            "id": CONVERSION,
            "name": CONVERSION,
            "event": "order_completed",
            "value_property": "revenue",
            "currency_property": "currency",
            "window": "P7D",
            "attribution_model": "last_touch",
            "touch_types": ["message.sent"],
        },
    )
    return journey_id


async def test_nothing_is_lost_or_duplicated_when_every_part_fails_under_load(
    chaos: Chaos,
) -> None:
    loop, run_id = chaos.loop, chaos.run
    journey_id = await _campaign(loop, run_id)
    load = Load(
        ingest_url=loop.processes["ingest"].url,
        write_key=loop.write_key,
        run=run_id,
        rate=SIZE.rate,
        purchase_every=SIZE.purchase_every,
        journey_id=journey_id,
        dsn=chaos.dsn,
        profile_schema=chaos.schema("profile"),
        attribution_schema=chaos.schema("attribution"),
    )
    run = Run(chaos, Poison(run_id))
    started = time.monotonic()
    phases: list[str] = []
    problems: list[str] = []
    suspects: list[str] = []
    try:
        # A backstop: the drain ends by SIZE.deadline; then the quiet check and the counts.
        async with asyncio.timeout(SIZE.deadline + _DRAIN_S + _DEAD_LETTERS_S + 60):
            seen, load_ended, drained = await _scenario(
                run, load, journey_id, started, phases, problems, suspects
            )
            dead_letters = await _dead_letters(run, problems)
    finally:
        await load.close()
    raw = raw_duplicates(seen.copies, run.injected)
    table, total = report(reconcile(load.people.values(), seen), phases, raw)
    suspects.extend(total.lost_people[:5])
    proxy = chaos.proxy.proxy
    failures = ", ".join(f"{k}: {v}" for k, v in sorted(load.stats.failed_attempts.items()))
    print(
        f"\nfault injection ({SIZE.name}): {SIZE.rate:g} people/s, "
        f"1 in {SIZE.purchase_every} buys, {SIZE.repeats}x each fault; load "
        f"{load_ended - started:.0f}s, drained in {drained - load_ended:.0f}s, "
        f"{time.monotonic() - started:.0f}s in all\n"
        f"failed attempts the load retried: {failures or 'none'}; "
        f"proxy: {proxy.accepted} connections, {proxy.dropped} reset by cuts\n"
        f"{table}\n"
        f"raw duplicates (`dup hook|mail|sms`) are charged to the fault in effect when the "
        f"message first arrived (or a kill just after); a kill of dispatch may resend what it "
        f"had in flight, at most "
        f"{DISPATCH_IN_FLIGHT} ({DISPATCH_IN_FLIGHT_SETTING})\n"
        f"{_copies(seen)}\n"
        f"batches whose results dispatch could not record: {_unrecorded_batches(chaos)}\n"
        f"ledger of the journey's messages: {_counts(seen.ledger)}"
        f"{_examples(seen.ledger_problems)}; deliveries of no message of it: "
        f"{_counts(seen.strays) or 0}\n"
        f"{_storms(run.storms)}\n"
        f"poison: {sum(run.poison.injected.values())} records on {len(run.poison.injected)} "
        f"topics; dead letters expected {sum(run.poison.expected.values())}, found "
        f"{sum(dead_letters.values())}\n"
        f"sends whose payload did not name their person (rendered before content knew the "
        f"traits): {len(seen.stale_renders)}{_examples(seen.stale_renders)}"
    )
    if suspects:
        print("where the missing effects stopped, per person:")
        for line in await trail(chaos, journey_id, suspects):
            print(f"  {line}")
    assert not problems, "\n".join(problems)
    assert total.unaccepted == 0, "ingest never accepted some calls (see `unacc.`)"
    # An outage is a 503 to retry (or no answer), never a 500.
    assert "500" not in load.stats.failed_attempts, "ingest answered 500 during a fault"
    assert not seen.stale_renders, "sends were rendered before content knew their person"
    assert not total.lost, table
    other_duplicates = {k: n for k, n in total.duplicates.items() if k not in CHANNELS and n}
    assert not other_duplicates, table
    _assert_raw_duplicates_within_bounds(raw, table)
    assert not seen.ledger_problems, "messages neither sent once nor failed with a reason"
    assert not seen.strays, "deliveries that are no message of the journey"
    _assert_storms_weathered(run.storms)
    assert dead_letters == run.poison.expected, (
        f"poison dead-lettered {dict(dead_letters)}, expected {dict(run.poison.expected)}"
    )


def _assert_raw_duplicates_within_bounds(raw: dict[str, Counter[str]], table: str) -> None:
    """0 for every fault but a kill of dispatch, which may resend what it had in flight."""
    for fault, copies in raw.items():
        if fault.startswith(KILL_DISPATCH):
            assert copies.total() <= DISPATCH_IN_FLIGHT, (
                f"{fault}: {copies.total()} raw duplicates, more than the {DISPATCH_IN_FLIGHT} "
                f"sends dispatch may have in flight\n{table}"
            )
        else:
            assert not copies.total(), f"{fault}: raw duplicates {dict(copies)}\n{table}"


def _assert_storms_weathered(storms: dict[str, Storm]) -> None:
    for channel, storm in storms.items():
        assert storm.errors and storm.throttled, f"the {channel} storm refused nothing"
        assert not storm.early, (
            f"{channel}: {len(storm.early)} messages came back before their Retry-After"
        )
    assert set(storms) == set(CHANNELS), f"storms on {sorted(storms)}, not on every channel"


def _copies(seen: Observed) -> str:
    """When each copy beyond the first came, after the first copy of the same message."""
    gaps = sorted((copy.at - copy.first_at, copy.channel) for copy in seen.copies)
    if not gaps:
        return "copies after the first of a message: 0"
    quartiles = [gaps[int(q * (len(gaps) - 1))] for q in (0, 0.25, 0.5, 0.75, 1)]
    spread = ", ".join(f"{channel} +{gap:.1f}s" for gap, channel in quartiles)
    return f"copies after the first of a message: {len(gaps)} (min, quartiles, max: {spread})"


def _unrecorded_batches(chaos: Chaos) -> str:
    """When dispatch's sender failed a batch (its results dropped; its rows are sent again after
    their lease), and why, from its log (all its lives)."""
    failures = []
    with chaos.loop.processes["dispatch"].log_path.open(errors="replace") as lines:
        for line in lines:
            if "sender failed; retrying" not in line:
                continue
            with contextlib.suppress(ValueError):
                entry = orjson.loads(line)
                error = str(entry.get("exception", "")).strip().splitlines()[-1:] or ["?"]
                failures.append(f"{str(entry.get('time', '?'))[11:19]} {error[0][:120]}")
    return f"{len(failures)}{_examples(failures, 5)}"


def _storms(storms: dict[str, Storm]) -> str:
    return "provider storm: " + "; ".join(
        f"{channel} {storm.answered} answered, {storm.errors} server errors, "
        f"{storm.throttled} throttled, {len(storm.early)} back before Retry-After"
        for channel, storm in storms.items()
    )


def _counts(counts: Counter[str]) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in counts.most_common())


def _examples(keys: list[str], most: int = 3) -> str:
    return f" (e.g. {', '.join(keys[:most])})" if keys else ""


async def _scenario(
    run: Run,
    load: Load,
    journey_id: str,
    started: float,
    phases: list[str],
    problems: list[str],
    suspects: list[str],
) -> tuple[Observed, float, float]:
    """Every fault in turn under load, then the drain; what was observed, and when the load
    ended and the drain finished. A drain that times out is added to `problems` (and the people
    it waited for to `suspects`) rather than raised, so that the counts are still printed."""
    chaos = run.chaos
    load.start()
    for repeat in range(SIZE.repeats):
        for name, inject in FAULTS:
            phase = name if SIZE.repeats == 1 else f"{name} #{repeat + 1}"
            phases.append(phase)
            load.phase = phase
            await asyncio.sleep(SIZE.before)  # paces the scenario: the load runs meanwhile
            injected = time.monotonic()
            run.injected.append((injected, phase))
            print(f"{phase}: injected at {time.strftime('%H:%M:%S', time.gmtime())} UTC")
            await inject(run)
            await chaos.all_ready(within=_RECOVERY_S, what=f"every service ready after {phase}")
            back = time.monotonic() - injected
            print(f"{phase}: back in {back:.1f}s, {len(load.people)} people so far")
            await asyncio.sleep(SIZE.after)
    load_ended = time.monotonic()
    # The drain ends before the test's deadline, so that what arrived is always counted and the
    # people whose effects are missing are traced, however long the machine is behind.
    drain_ends = min(
        load_ended + _DRAIN_S + _DRAIN_PER_PERSON_S * len(load.people),
        started + SIZE.deadline,
    )
    unposted = await load.stop(within=max(1.0, drain_ends - time.monotonic()))
    if unposted:
        problems.append(
            f"{len(unposted)} buyers' sends were never recorded by attribution, so their "
            f"purchases were not posted: {', '.join(unposted[:5])}"
        )
        suspects.extend(unposted[:5])
    problems.extend(await _drained(chaos, load, journey_id, drain_ends))
    problems.extend(f"unhealthy after the faults: {sick}" for sick in await chaos.unhealthy())
    drained = time.monotonic()
    seen = await observe(
        dsn=chaos.dsn,
        bootstrap=chaos.stack.kafka_bootstrap,
        run=chaos.run,
        profile_schema=chaos.schema("profile"),
        attribution_schema=chaos.schema("attribution"),
        dispatch_schema=chaos.schema("dispatch"),
        conversion_definition=CONVERSION,
        journey_id=journey_id,
        providers=chaos.loop.providers,
        email_from=EMAIL_FROM,
    )
    return seen, load_ended, drained


async def _dead_letters(run: Run, problems: list[str]) -> Counter[tuple[str, str]]:
    """The poison's dead letters, once they are all there or the wait is over."""
    bootstrap = run.chaos.stack.kafka_bootstrap
    found: Counter[tuple[str, str]] = Counter()

    async def all_dead_lettered() -> bool:
        found.clear()
        found.update(await run.poison.dead_letters(bootstrap))
        return found.total() >= run.poison.expected.total()

    try:
        await wait_for(
            all_dead_lettered, within=_DEAD_LETTERS_S, what="the poison's dead letters", every=1
        )
    except AssertionError as error:
        problems.append(str(error))
    return found


async def _drained(chaos: Chaos, load: Load, journey_id: str, ends: float) -> list[str]:
    """Wait until every expected effect is there and nothing is left in flight anywhere; what
    did not happen in time."""
    people = list(load.people.values())
    identified = {p.user for p in people if p.identify.accepted}
    bought = {p.user for p in people if p.purchase is not None and p.purchase.accepted}
    providers = chaos.loop.providers
    prefix = f"{journey_id}:"

    async def everything_arrived() -> bool:
        delivered = {
            (delivery.channel, delivery.key)
            for delivery in providers.deliveries
            if delivery.channel == "email" or delivery.key.startswith(prefix)
        }
        per_channel: Counter[str] = Counter(channel for channel, _ in delivered)
        if any(per_channel[channel] < len(identified) for channel in CHANNELS):
            return False
        counts = await _fetch_row(
            chaos,
            f"SELECT "
            f"(SELECT count(*) FROM {chaos.schema('attribution')}.conversions "
            f"WHERE definition_id = $1 AND attributed) AS conversions, "
            f"(SELECT coalesce(sum((state->'counters'->>'identify')::int), 0) "
            f"FROM {chaos.schema('profile')}.profiles WHERE state->'traits'->>'chaos_run' = $2) "
            "AS identifies, "
            f"(SELECT coalesce(sum((state->'counters'->>'order_completed')::int), 0) "
            f"FROM {chaos.schema('profile')}.profiles WHERE state->'traits'->>'chaos_run' = $2) "
            "AS orders",
            CONVERSION,
            chaos.run,
        )
        return counts is not None and (
            counts["conversions"] >= len(bought)
            and counts["identifies"] >= len(identified)
            and counts["orders"] >= len(bought)
        )

    problems = []
    try:
        await wait_for(
            everything_arrived,
            within=max(1.0, ends - time.monotonic()),
            what="every expected effect",
            every=0.5,
        )
    except AssertionError as error:
        problems.append(str(error))
    try:
        await wait_for(
            _Quiet(chaos, journey_id),
            within=_DRAIN_S,
            what="empty outboxes and nothing changing any more",
            every=1.0,
        )
    except AssertionError as error:
        problems.append(str(error))
    return problems


async def _fetch_row(chaos: Chaos, query: str, *args: Any) -> asyncpg.Record | None:
    connection = await asyncpg.connect(chaos.dsn, timeout=5)
    try:
        row: asyncpg.Record | None = await connection.fetchrow(query, *args)
        return row
    finally:
        await connection.close()


class _Quiet:
    """Nothing in flight: every service's outbox is empty, and what the receivers, profile and
    attribution hold has not changed over the last `polls` polls.

    (Consumer-group lag is not used: the embedded broker's ListOffsets falls short of the end,
    and its OffsetFetch answers do not give committed offsets aiokafka can compare.)
    """

    def __init__(self, chaos: Chaos, journey_id: str, polls: int = 4) -> None:
        self._chaos = chaos
        self._journey_id = journey_id
        self._polls = polls
        self._seen: list[tuple[Any, ...]] = []

    async def __call__(self) -> bool:
        chaos = self._chaos
        backlog = " + ".join(
            f"(SELECT coalesce(sum(events), 0) FROM {chaos.schema(name)}.outbox)"
            for name in CONSUMERS
        )
        row = await _fetch_row(
            chaos,
            f"SELECT {backlog} AS backlog, "
            f"(SELECT count(*) FROM {chaos.schema('attribution')}.conversions) AS conversions, "
            f"(SELECT count(*) FROM {chaos.schema('attribution')}.touchpoints) AS touches, "
            f"(SELECT sum(length(state::text)) FROM {chaos.schema('profile')}.profiles) AS state",
        )
        snapshot = (
            *(row.values() if row is not None else ()),
            len(chaos.loop.providers.deliveries),
        )
        self._seen = [*self._seen[-(self._polls - 1) :], snapshot]
        return (
            row is not None
            and row["backlog"] == 0
            and len(self._seen) == self._polls
            and all(seen == snapshot for seen in self._seen)
        )

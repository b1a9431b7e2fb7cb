"""What the load expected against what every service did, per person, per fault and in total.

Each accepted call expects exactly one effect of each kind:

| kind | expected for | observed in |
|---|---|---|
| `profile` | each accepted identify and purchase | profile's `counters` for the person |
| `webhook`, `email`, `sms` | each accepted identify (the three sends) | messages accepted, raw |
| `credit` | each accepted purchase | distinct `conversion.attributed` events (ce_id) |
| `conversion` | each accepted purchase | attribution's `conversions` row, `attributed` |
| `profile_credit` | each accepted purchase | profile's `attributed_conversions` (1.0) |

The receivers count every message they accept, raw: none of them deduplicates. Fewer than
expected is *lost*, more is *duplicated*. A call ingest never accepted (the load gave
up on it) expects nothing, but it may still have landed: more than one effect is a duplicate.

A duplicate message is also charged to the fault that caused it (`raw_duplicates`): the one in
effect when its first copy arrived, or a kill injected just after that; the table's per-channel
columns show these.
And every ledger row of the journey must end either sent and delivered (once, or again within
the raw duplicates above), or failed with a reason and delivered never (`ledger_problems`).
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from libs.common import topics
from libs.common.bus.reader import header
from services.dispatch.channels.email import message_id_header
from tests.integration.chaos.load import Person
from tests.integration.dispatch.providers import Providers
from tests.integration.support import read_topic

CHANNELS = ("webhook", "email", "sms")
KINDS = ("profile", *CHANNELS, "credit", "conversion", "profile_credit")
BEFORE_ANY_FAULT = "(before any fault)"


@dataclass(frozen=True)
class Copy:
    """A message delivered again: its channel, and when its first copy and this one arrived."""

    channel: str
    first_at: float
    at: float


@dataclass
class Observed:
    """Effects per user, as the services and the receiver hold them at the end."""

    identify_counts: dict[str, int] = field(default_factory=dict)
    order_counts: dict[str, int] = field(default_factory=dict)
    profile_credits: dict[str, float] = field(default_factory=dict)
    # Messages delivered per channel and user, raw; each copy after a key's first, with when.
    delivered: dict[str, Counter[str]] = field(
        default_factory=lambda: {channel: Counter() for channel in CHANNELS}
    )
    copies: list[Copy] = field(default_factory=list)
    # Deliveries of no ledger row of the journey (should be none).
    strays: Counter[str] = field(default_factory=Counter)
    ledger: Counter[str] = field(default_factory=Counter)
    ledger_problems: list[str] = field(default_factory=list)
    credits: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    conversions: Counter[str] = field(default_factory=Counter)
    unattributed: Counter[str] = field(default_factory=Counter)
    # Sends whose payload does not name their person: rendered before content knew the traits.
    stale_renders: list[str] = field(default_factory=list)


@dataclass
class Tally:
    people: int = 0
    accepted: int = 0
    unaccepted: int = 0
    effects: int = 0
    sends: int = 0
    credits: int = 0
    duplicates: Counter[str] = field(default_factory=Counter)
    lost: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    lost_people: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.people += other.people
        self.accepted += other.accepted
        self.unaccepted += other.unaccepted
        self.effects += other.effects
        self.sends += other.sends
        self.credits += other.credits
        self.duplicates.update(other.duplicates)
        self.lost.update(other.lost)
        self.examples.extend(other.examples[: max(0, 10 - len(self.examples))])
        self.lost_people.extend(other.lost_people)


async def observe(
    *,
    dsn: str,
    bootstrap: str,
    run: str,
    profile_schema: str,
    attribution_schema: str,
    dispatch_schema: str,
    conversion_definition: str,
    journey_id: str,
    providers: Providers,
    email_from: str,
) -> Observed:
    seen = Observed()
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        profiles = await connection.fetch(
            f"SELECT i.value AS user_id, p.id, p.state->'counters' AS counters, "
            f"p.state->'attributed_conversions' AS credit FROM {profile_schema}.identities i "
            f"JOIN {profile_schema}.profiles p ON p.id = i.profile_id "
            "WHERE i.kind = 'user_id' AND i.value LIKE $1",
            f"{run}\\_%",
        )
        user_of: dict[str, str] = {}
        for row in profiles:
            counters = orjson.loads(row["counters"] or "{}")
            user_of[row["id"]] = row["user_id"]
            seen.identify_counts[row["user_id"]] = int(counters.get("identify", 0))
            seen.order_counts[row["user_id"]] = int(counters.get("order_completed", 0))
            seen.profile_credits[row["user_id"]] = float(orjson.loads(row["credit"] or "0"))
        conversions = await connection.fetch(
            f"SELECT profile_id, attributed FROM {attribution_schema}.conversions "
            "WHERE definition_id = $1",
            conversion_definition,
        )
        ledger = await connection.fetch(
            f"SELECT idempotency_key, profile_id, channel, status, error "
            f"FROM {dispatch_schema}.sends WHERE idempotency_key LIKE $1",
            f"{journey_id}:%",
        )
    finally:
        await connection.close()
    for row in conversions:
        user = user_of.get(row["profile_id"], f"?{row['profile_id']}")
        (seen.conversions if row["attributed"] else seen.unattributed)[user] += 1
    _count_deliveries(seen, providers, ledger, user_of, email_from)
    for key, message in providers.webhook("webhook").by_key.items():
        if key.startswith(f"{journey_id}:") and _webhook_user(message) != _key_user(key, user_of):
            seen.stale_renders.append(key)
    for record in await read_topic(bootstrap, topics.ATTRIBUTION):
        if header(record, "ce_type") != "conversion.attributed" or record.value is None:
            continue
        data = orjson.loads(record.value)
        if data.get("conversion_name") == conversion_definition:
            user = user_of.get(data["profile_id"], f"?{data['profile_id']}")
            seen.credits[user].add(header(record, "ce_id"))
    return seen


def _count_deliveries(
    seen: Observed,
    providers: Providers,
    ledger: Sequence[asyncpg.Record],
    user_of: dict[str, str],
    email_from: str,
) -> None:
    """Each delivery to the ledger row it is a copy of (an email by its Message-ID, the others
    by their Idempotency-Key); then each row's end against its deliveries."""
    rows: dict[tuple[str, str], asyncpg.Record] = {}
    for row in ledger:
        key = row["idempotency_key"]
        wire_key = message_id_header(key, email_from) if row["channel"] == "email" else key
        rows[(row["channel"], wire_key)] = row
    copies: Counter[tuple[str, str]] = Counter()
    first_at: dict[tuple[str, str], float] = {}
    for delivery in providers.deliveries:
        found = rows.get((delivery.channel, delivery.key))
        if found is None:
            # The warm-up's webhooks are not the journey's; anything else would be a stray.
            if delivery.channel != "webhook":
                seen.strays[delivery.channel] += 1
            continue
        copies[(delivery.channel, delivery.key)] += 1
        first = first_at.setdefault((delivery.channel, delivery.key), delivery.at)
        if copies[(delivery.channel, delivery.key)] > 1:
            seen.copies.append(Copy(delivery.channel, first, delivery.at))
        user = user_of.get(found["profile_id"], f"?{found['profile_id']}")
        seen.delivered[delivery.channel][user] += 1
    for (channel, wire_key), row in rows.items():
        _judge_ledger_row(seen, row, copies[(channel, wire_key)])


def _judge_ledger_row(seen: Observed, row: asyncpg.Record, delivered: int) -> None:
    """Sent and delivered exactly once, or failed with a reason and never delivered. Sent and
    delivered more than once is counted apart: those copies are raw duplicates, which the run
    bounds per fault (none but a kill of dispatch's sends in flight)."""
    status, key = row["status"], row["idempotency_key"]
    if status == "sent" and delivered == 1:
        seen.ledger["sent once"] += 1
    elif status == "sent" and delivered > 1:
        seen.ledger["sent, delivered again"] += 1
    elif status == "failed" and delivered == 0 and row["error"]:
        seen.ledger["failed with a reason"] += 1
    elif status == "suppressed" and delivered == 0:
        seen.ledger["suppressed"] += 1
    else:
        seen.ledger["neither or both"] += 1
        seen.ledger_problems.append(f"{key}: {status}, delivered {delivered}x ({row['error']})")


# A kill cuts short the record of the calls that had just ended: their first copies arrived at
# most this long before it.
_CUT_SHORT_S = 3.0


def raw_duplicates(
    copies: Iterable[Copy], injected: Sequence[tuple[float, str]]
) -> dict[str, Counter[str]]:
    """Per fault, per channel: the copies it caused. A copy is charged to the fault in effect
    when the message's first copy arrived (the last injected before it), or to one injected
    within `_CUT_SHORT_S` after it and before the copy (a kill of dispatch, which lost the
    record of a call it had made). Not to the fault in effect when the copy arrived: a result
    that could not be recorded is sent again a lease later, which may be after the next fault.
    `injected` is (monotonic time, fault), in order."""
    times = [at for at, _ in injected]
    found: dict[str, Counter[str]] = defaultdict(Counter)
    for copy in copies:
        after = bisect.bisect_right(times, copy.first_at)
        if after < len(times) and times[after] <= min(copy.first_at + _CUT_SHORT_S, copy.at):
            index = after
        else:
            index = after - 1
        fault = injected[index][1] if index >= 0 else BEFORE_ANY_FAULT
        found[fault][copy.channel] += 1
    return found


def _key_user(key: str, user_of: dict[str, str]) -> str:
    """Whose send this is, from its key (journey:version:node:profile:run): what the journey
    decided, whatever the rendered payload says."""
    profile_id = key.split(":")[3]
    return user_of.get(profile_id, f"?{profile_id}")


def _webhook_user(message: dict[str, Any]) -> str:
    user: str = orjson.loads(message["body"])["payload"]["user"]
    return user


def reconcile(people: Iterable[Person], seen: Observed) -> dict[str, Tally]:
    """A tally per phase (the fault during which each person's identify was first posted)."""
    tallies: dict[str, Tally] = {}
    for person in people:
        tally = tallies.setdefault(person.phase, Tally())
        tally.people += 1
        _tally_identify(tally, person, seen)
        _tally_purchase(tally, person, seen)
    return tallies


def _tally_identify(tally: Tally, person: Person, seen: Observed) -> None:
    user = person.user
    identify = seen.identify_counts.get(user, 0)
    tally.effects += identify
    sends = {channel: seen.delivered[channel][user] for channel in CHANNELS}
    tally.sends += sum(sends.values())
    if person.identify.accepted:
        tally.accepted += 1
        _expect(tally, user, "profile", identify)
        for channel, count in sends.items():
            _expect(tally, user, channel, count)
    else:
        tally.unaccepted += 1
        _at_most_one(tally, user, "profile", identify)
        for channel, count in sends.items():
            _at_most_one(tally, user, channel, count)


def _tally_purchase(tally: Tally, person: Person, seen: Observed) -> None:
    user, purchase = person.user, person.purchase
    orders = seen.order_counts.get(user, 0)
    credits = len(seen.credits.get(user, ()))
    conversions = seen.conversions[user]
    profile_credit = seen.profile_credits.get(user, 0.0)
    tally.effects += orders
    tally.credits += credits
    if purchase is not None and purchase.accepted:
        tally.accepted += 1
        _expect(tally, user, "profile", orders)
        _expect(tally, user, "credit", credits)
        _expect(tally, user, "conversion", conversions)
        _expect(tally, user, "profile_credit", round(profile_credit))
        if seen.unattributed[user]:
            _example(tally, f"{user}: conversion recorded without credit")
        return
    if purchase is not None:
        tally.unaccepted += 1
    for kind, count in (("profile", orders), ("credit", credits), ("conversion", conversions)):
        (_at_most_one if purchase is not None else _none)(tally, user, kind, count)


def _expect(tally: Tally, user: str, kind: str, count: int) -> None:
    if count < 1:
        tally.lost[kind] += 1
        tally.lost_people.append(user)
        _example(tally, f"{user}: no {kind} effect")
    elif count > 1:
        tally.duplicates[kind] += count - 1
        _example(tally, f"{user}: {count} {kind} effects")


def _at_most_one(tally: Tally, user: str, kind: str, count: int) -> None:
    if count > 1:
        tally.duplicates[kind] += count - 1
        _example(tally, f"{user} (unaccepted call): {count} {kind} effects")


def _none(tally: Tally, user: str, kind: str, count: int) -> None:
    if count > 0:
        tally.duplicates[kind] += count
        _example(tally, f"{user} (never bought): {count} {kind} effects")


def _example(tally: Tally, text: str) -> None:
    if len(tally.examples) < 10:
        tally.examples.append(text)


def report(
    tallies: dict[str, Tally], order: Iterable[str], raw: dict[str, Counter[str]]
) -> tuple[str, Tally]:
    """The table of counts per fault and in total, and the total. `dup <channel>` is the raw
    duplicates the fault caused (by when the copy arrived); `dup` the other kinds' duplicates
    and `lost` everything lost, of the people who arrived in the fault's window."""
    total = Tally()
    lines = [
        f"{'fault':<24}{'people':>7}{'accepted':>9}{'unacc.':>7}{'effects':>8}{'sends':>7}"
        f"{'credits':>8}{'dup hook':>9}{'dup mail':>9}{'dup sms':>8}{'dup':>5}{'lost':>5}"
    ]
    raw_total: Counter[str] = Counter()
    phases = [*order, *(phase for phase in raw if phase not in order)]
    for phase in phases:
        tally = tallies.get(phase, Tally())
        total.add(tally)
        raw_total.update(raw.get(phase, Counter()))
        if phase in tallies or phase in raw:
            lines.append(_line(phase, tally, raw.get(phase, Counter())))
    lines.append(_line("total", total, raw_total))
    for kind in KINDS:
        if total.duplicates[kind] or total.lost[kind]:
            lines.append(f"  {kind}: duplicated {total.duplicates[kind]}, lost {total.lost[kind]}")
    lines += [f"  e.g. {example}" for example in total.examples]
    return "\n".join(lines), total


def _line(name: str, tally: Tally, raw: Counter[str]) -> str:
    others = sum(count for kind, count in tally.duplicates.items() if kind not in CHANNELS)
    return (
        f"{name:<24}{tally.people:>7}{tally.accepted:>9}{tally.unaccepted:>7}"
        f"{tally.effects:>8}{tally.sends:>7}{tally.credits:>8}{raw['webhook']:>9}"
        f"{raw['email']:>9}{raw['sms']:>8}{others:>5}{sum(tally.lost.values()):>5}"
    )


async def trail(chaos: Any, journey_id: str, users: Iterable[str]) -> list[str]:
    """For each person, what each service holds of them: where an effect that never came stopped
    (segment membership, journey run, content decision, dispatch ledger, attribution touches)."""
    lines = []
    connection = await asyncpg.connect(chaos.dsn, timeout=10)
    try:
        for user in dict.fromkeys(users):
            profile_id = await connection.fetchval(
                f"SELECT profile_id FROM {chaos.schema('profile')}.identities "
                "WHERE kind = 'user_id' AND value = $1",
                user,
            )
            if profile_id is None:
                lines.append(f"{user}: no profile")
                continue
            found = {
                "segments": await connection.fetchval(
                    f"SELECT count(*) FROM {chaos.schema('segment')}.memberships "
                    "WHERE profile_id = $1",
                    profile_id,
                ),
                "runs": await _rows(
                    connection,
                    f"SELECT status, node_id FROM {chaos.schema('journey')}.runs "
                    "WHERE profile_id = $1 AND journey_id = $2",
                    profile_id,
                    journey_id,
                ),
                "content": await _rows(
                    connection,
                    f"SELECT outcome FROM {chaos.schema('content')}.decisions "
                    "WHERE profile_id = $1",
                    profile_id,
                ),
                "dispatch": await _rows(
                    connection,
                    f"SELECT status, attempts, error FROM {chaos.schema('dispatch')}.sends "
                    "WHERE profile_id = $1",
                    profile_id,
                ),
                "touches": await _rows(
                    connection,
                    f"SELECT outcome FROM {chaos.schema('attribution')}.touchpoints "
                    "WHERE profile_id = $1",
                    profile_id,
                ),
            }
            lines.append(f"{user} ({profile_id}): {found}")
    finally:
        await connection.close()
    return lines


async def _rows(connection: asyncpg.Connection, query: str, *args: Any) -> list[tuple[Any, ...]]:
    return [tuple(row.values()) for row in await connection.fetch(query, *args)]

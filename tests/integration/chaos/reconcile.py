"""What the load expected against what every service did, per person, per fault and in total.

Each accepted call expects exactly one effect of each kind:

| kind | expected for | observed in |
|---|---|---|
| `profile` | each accepted identify and purchase | profile's `counters` for the person |
| `send` | each accepted identify (the one step) | distinct Idempotency-Keys per key's profile |
| `credit` | each accepted purchase | distinct `conversion.attributed` events (ce_id) |
| `conversion` | each accepted purchase | attribution's `conversions` row, `attributed` |
| `profile_credit` | each accepted purchase | profile's `attributed_conversions` (1.0) |

Fewer than expected is *lost*, more is *duplicated*. A call ingest never accepted (the load gave
up on it) expects nothing, but it may still have landed: more than one effect is a duplicate.
A retransmission of a send with a key the receiver already has is allowed (the receiver
deduplicates it, as providers do) and counted apart.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from libs.common import topics
from libs.common.bus.reader import header
from tests.integration.chaos.load import Person
from tests.integration.dispatch.providers import WebhookInbox
from tests.integration.support import read_topic

KINDS = ("profile", "send", "credit", "conversion", "profile_credit")


@dataclass
class Observed:
    """Effects per user, as the services and the receiver hold them at the end."""

    identify_counts: dict[str, int] = field(default_factory=dict)
    order_counts: dict[str, int] = field(default_factory=dict)
    profile_credits: dict[str, float] = field(default_factory=dict)
    keys: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    raw_sends: Counter[str] = field(default_factory=Counter)
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
    retransmissions: int = 0
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
        self.retransmissions += other.retransmissions
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
    conversion_definition: str,
    journey_id: str,
    inbox: WebhookInbox,
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
    finally:
        await connection.close()
    for row in conversions:
        user = user_of.get(row["profile_id"], f"?{row['profile_id']}")
        (seen.conversions if row["attributed"] else seen.unattributed)[user] += 1
    for key, message in inbox.by_key.items():
        if key.startswith(f"{journey_id}:"):
            user = _key_user(key, user_of)
            seen.keys[user].add(key)
            if _webhook_user(message) != user:
                seen.stale_renders.append(key)
    for message in inbox.raw:
        key = message["headers"].get("idempotency-key", "")
        if key.startswith(f"{journey_id}:"):
            seen.raw_sends[_key_user(key, user_of)] += 1
    for record in await read_topic(bootstrap, topics.ATTRIBUTION):
        if header(record, "ce_type") != "conversion.attributed" or record.value is None:
            continue
        data = orjson.loads(record.value)
        if data.get("conversion_name") == conversion_definition:
            user = user_of.get(data["profile_id"], f"?{data['profile_id']}")
            seen.credits[user].add(header(record, "ce_id"))
    return seen


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
        user = person.user
        tally.retransmissions += seen.raw_sends[user] - len(seen.keys.get(user, ()))
        identify = seen.identify_counts.get(user, 0)
        sends = len(seen.keys.get(user, ()))
        tally.effects += identify
        tally.sends += sends
        if person.identify.accepted:
            tally.accepted += 1
            _expect(tally, user, "profile", identify)
            _expect(tally, user, "send", sends)
        else:
            tally.unaccepted += 1
            _at_most_one(tally, user, "profile", identify)
            _at_most_one(tally, user, "send", sends)
        purchase = person.purchase
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
        else:
            if purchase is not None:
                tally.unaccepted += 1
            for kind, count in (
                ("profile", orders),
                ("credit", credits),
                ("conversion", conversions),
            ):
                (_at_most_one if purchase is not None else _none)(tally, user, kind, count)
    return tallies


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


def report(tallies: dict[str, Tally], order: Iterable[str]) -> tuple[str, Tally]:
    """The table of counts per fault and in total, and the total."""
    total = Tally()
    lines = [
        f"{'fault':<22}{'people':>8}{'accepted':>10}{'unacc.':>8}{'effects':>9}{'sends':>8}"
        f"{'credits':>9}{'retrans.':>10}{'dup':>6}{'lost':>6}"
    ]
    for phase in order:
        tally = tallies.get(phase)
        if tally is None:
            continue
        total.add(tally)
        lines.append(_line(phase, tally))
    lines.append(_line("total", total))
    for kind in KINDS:
        if total.duplicates[kind] or total.lost[kind]:
            lines.append(f"  {kind}: duplicated {total.duplicates[kind]}, lost {total.lost[kind]}")
    lines += [f"  e.g. {example}" for example in total.examples]
    return "\n".join(lines), total


def _line(name: str, tally: Tally) -> str:
    return (
        f"{name:<22}{tally.people:>8}{tally.accepted:>10}{tally.unaccepted:>8}"
        f"{tally.effects:>9}{tally.sends:>8}{tally.credits:>9}{tally.retransmissions:>10}"
        f"{sum(tally.duplicates.values()):>6}{sum(tally.lost.values()):>6}"
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

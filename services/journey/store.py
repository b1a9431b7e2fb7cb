"""The journey service's queries; nothing else touches its tables."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.profiles import ProfileCopies, ProfileFacts
from libs.common.retention import Retained, batched_delete
from libs.common.store import SchemaStore
from services.journey.engagement import EngagementChanges, MessageRecord
from services.journey.engine import JOURNEY, LIVE, ChannelRanking, Decision, Run, Timing, Trigger
from services.journey.enrolment import Enrolment
from services.journey.graph import Journey
from services.journey.learning import CountRow, PopulationRow
from services.journey.runs import RunKey, SavedRun


@dataclass(frozen=True)
class JourneyRow:
    id: str
    name: str
    description: str
    status: str
    draft: Any
    published_version: int | None
    created_at: datetime
    updated_at: datetime
    kind: str = "journey"


@dataclass(frozen=True)
class BroadcastRow:
    id: str
    spec: Any
    status: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class MembershipChange:
    """A profile entered (`entered_at`) or left (None) a segment."""

    segment_id: str
    profile_id: str
    entered_at: datetime | None


@dataclass(frozen=True)
class VersionRow:
    version: int
    definition: Any
    published_at: datetime


@dataclass(frozen=True)
class DueTimer:
    journey_id: str
    profile_id: str
    run: int
    node_id: str
    due_at: datetime


@dataclass(frozen=True)
class StatRow:
    version: int
    node_id: str
    counter: str
    value: int


@dataclass(frozen=True)
class Entries:
    """Active journeys (their latest versions, in id order) by the segment or behaviour that
    enters them."""

    on_segment: dict[str, list[Journey]]
    on_event: dict[str, list[Journey]]

    def segment(self, segment_id: str) -> list[Journey]:
        return self.on_segment.get(segment_id, [])

    def event(self, name: str) -> list[Journey]:
        return self.on_event.get(name, [])


@functools.lru_cache(maxsize=1024)
def _parsed(journey_id: str, version: int, definition_json: str) -> Journey:
    # Keyed by the text too: a journey deleted and created again restarts at version 1.
    return Journey.parse(journey_id, version, orjson.loads(definition_json))


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        # A behaviour's properties may hold integers beyond 64 bits, which only json writes.
        return json.dumps(value)


# The profiles `p` as one JSON array of their facts.
_FACTS_ARRAY = (
    "coalesce(json_agg(json_build_object('profile_id', p.profile_id, 'traits', p.traits, "
    "'tags', p.tags, 'lifecycle_stage', p.lifecycle_stage, 'scores', p.scores, "
    "'top_category', p.top_category) ORDER BY p.profile_id), '[]')::text"
)


def _facts_of(item: dict[str, Any]) -> ProfileFacts:
    return ProfileFacts(
        item["profile_id"],
        item["traits"],
        item["tags"],
        item["lifecycle_stage"],
        item["scores"],
        item["top_category"],
    )


# A run with its timer's due time, if it has one.
# A finished run past its period and its goal's window, unless it is the person's latest of
# the journey: re-entry and the next run's number read that one.
_FORGET_RUNS = batched_delete(
    "runs",
    "t.status NOT IN ('active', 'waiting', 'held') "
    "AND t.updated_at < now() - make_interval(secs => :seconds) "
    "AND coalesce(t.goal_until, t.updated_at) < now() - make_interval(secs => :seconds) "
    "AND EXISTS (SELECT 1 FROM {s}.runs l WHERE l.journey_id = t.journey_id "
    "AND l.profile_id = t.profile_id AND l.run > t.run)",
)
_RUNS = (
    "SELECT r.journey_id, r.profile_id, r.run, r.version, r.node_id, r.status, r.entered_at, "
    "r.trigger, r.arms, r.requests, r.exit_reason, r.goal_until, r.goal_reached_at, r.timing, "
    "r.channels, t.due_at "
    "FROM {s}.runs r LEFT JOIN {s}.timers t "
    "ON t.journey_id = r.journey_id AND t.profile_id = r.profile_id AND t.run = r.run "
)


class JourneyStore(SchemaStore):
    """Journey's queries (SchemaStore: the caller's transaction, the service's schema)."""

    def __init__(self, session: AsyncSession, schema: str) -> None:
        super().__init__(session, schema)
        self._copies = ProfileCopies(session, self._schema, ProfileFacts)

    # Journeys and versions.

    async def insert_journey(
        self, journey_id: str, name: str, description: str, draft: Any, kind: str = "journey"
    ) -> JourneyRow | None:
        result = await self._execute(
            "INSERT INTO {s}.journeys (id, name, description, draft, kind) "
            "VALUES (:id, :name, :description, CAST(:draft AS jsonb), :kind) "
            "ON CONFLICT (id) DO NOTHING RETURNING *",
            {
                "id": journey_id,
                "name": name,
                "description": description,
                "draft": _json(draft),
                "kind": kind,
            },
        )
        return _journey(result.first())

    async def get_journey(self, journey_id: str, *, lock: bool = False) -> JourneyRow | None:
        """The journey; with `lock`, held against other changes of it until the transaction
        ends (NO KEY UPDATE: runs and enrolments still refer to it meanwhile)."""
        locking = " FOR NO KEY UPDATE" if lock else ""
        result = await self._execute(
            "SELECT * FROM {s}.journeys WHERE id = :id" + locking, {"id": journey_id}
        )
        return _journey(result.first())

    async def list_journeys(self) -> list[JourneyRow]:
        result = await self._execute(
            "SELECT * FROM {s}.journeys WHERE kind = 'journey' ORDER BY id"
        )
        return [row for row in map(_journey, result) if row is not None]

    async def update_draft(
        self, journey_id: str, name: str, description: str, draft: Any
    ) -> JourneyRow | None:
        result = await self._execute(
            "UPDATE {s}.journeys SET name = :name, description = :description, "
            "draft = CAST(:draft AS jsonb), updated_at = now() WHERE id = :id RETURNING *",
            {"id": journey_id, "name": name, "description": description, "draft": _json(draft)},
        )
        return _journey(result.first())

    async def delete_journey(self, journey_id: str) -> bool:
        result = await self._execute(
            "DELETE FROM {s}.journeys WHERE id = :id RETURNING id", {"id": journey_id}
        )
        return result.first() is not None

    async def versions(self, journey_id: str) -> list[VersionRow]:
        result = await self._execute(
            "SELECT version, definition, published_at FROM {s}.journey_versions "
            "WHERE journey_id = :id ORDER BY version",
            {"id": journey_id},
        )
        return [VersionRow(row.version, row.definition, row.published_at) for row in result]

    async def publish(self, row: JourneyRow, journey: Journey) -> JourneyRow:
        """Store the draft as the next version and make it the one new profiles enter (a
        broadcast's version enters no one on segment.entered: only its enrolments enter)."""
        version = (row.published_version or 0) + 1
        await self._execute(
            "INSERT INTO {s}.journey_versions (journey_id, version, definition) "
            "VALUES (:id, :version, CAST(:definition AS jsonb))",
            {"id": row.id, "version": version, "definition": _json(row.draft)},
        )
        result = await self._execute(
            "UPDATE {s}.journeys SET published_version = :version, entry_segment = :segment, "
            "entry_event = :event, updated_at = now(), "
            "status = CASE WHEN status = 'paused' THEN 'paused' ELSE 'active' END "
            "WHERE id = :id RETURNING *",
            {
                "id": row.id,
                "version": version,
                "segment": journey.entry.segment if row.kind == "journey" else None,
                "event": journey.entry.event,
            },
        )
        updated = _journey(result.first())
        assert updated is not None
        return updated

    async def set_status(self, journey_id: str, status: str) -> JourneyRow | None:
        result = await self._execute(
            "UPDATE {s}.journeys SET status = :status, updated_at = now() WHERE id = :id "
            "RETURNING *",
            {"id": journey_id, "status": status},
        )
        return _journey(result.first())

    async def release_held_runs(self, journey_id: str, per_minute: int | None = None) -> int:
        """Resume: every run held without a timer (at a send node) gets one, due now, or with
        `per_minute`, one after another that many a minute (in profile id order). A run held
        for its turn keeps its timer."""
        gap = 60.0 / per_minute if per_minute else 0.0
        result = await self._execute(
            "INSERT INTO {s}.timers (journey_id, profile_id, run, node_id, due_at) "
            "SELECT r.journey_id, r.profile_id, r.run, r.node_id, now() + make_interval(secs => "
            "CAST(:gap AS float8) * (row_number() OVER (ORDER BY r.profile_id, r.run) - 1)) "
            "FROM {s}.runs r "
            "WHERE r.journey_id = :id AND r.status = 'held' AND NOT EXISTS (SELECT 1 FROM "
            "{s}.timers t WHERE t.journey_id = r.journey_id AND t.profile_id = r.profile_id "
            "AND t.run = r.run) ON CONFLICT DO NOTHING",
            {"id": journey_id, "gap": gap},
        )
        return int(result.rowcount or 0)

    async def exit_live_runs(self, journey_id: str, reason: str) -> None:
        """End every live run of the journey (timers follow), counted as exits where each was;
        the runs are locked in key order first, as the timer worker locks them."""
        result = await self._execute(
            "WITH locked AS (SELECT journey_id, profile_id, run FROM {s}.runs "
            "WHERE journey_id = :id AND status = ANY(CAST(:live AS text[])) "
            "ORDER BY journey_id, profile_id, run FOR UPDATE), "
            "ended AS (UPDATE {s}.runs r SET status = 'exited', exit_reason = :reason, "
            "updated_at = now() FROM locked l WHERE r.journey_id = l.journey_id "
            "AND r.profile_id = l.profile_id AND r.run = l.run "
            "AND r.status = ANY(CAST(:live AS text[])) RETURNING r.version, r.node_id) "
            "SELECT version, node_id, count(*) AS n FROM ended GROUP BY version, node_id",
            {"id": journey_id, "live": list(LIVE), "reason": reason},
        )
        counters: Counter[tuple[str, int, str, str]] = Counter()
        for row in result:
            counters[(journey_id, row.version, JOURNEY, "exited")] += row.n
            if row.node_id is not None:
                counters[(journey_id, row.version, row.node_id, "exited")] += row.n
        await self._execute(
            "DELETE FROM {s}.timers t USING {s}.runs r WHERE t.journey_id = :id "
            "AND r.journey_id = t.journey_id AND r.profile_id = t.profile_id AND r.run = t.run "
            "AND r.status = 'exited'",
            {"id": journey_id},
        )
        await self.add_counters(counters)

    # What a dry run replays.

    async def members_with_facts(self, segment_id: str) -> list[ProfileFacts]:
        """Today's members of the segment, with journey's copy of their facts; one JSON array
        built by PostgreSQL (a dry run reads 100,000 at once)."""
        result = await self._execute(
            f"SELECT {_FACTS_ARRAY} FROM {{s}}.memberships m JOIN {{s}}.profiles p "
            "ON p.profile_id = m.profile_id WHERE m.segment_id = :segment",
            {"segment": segment_id},
        )
        return [_facts_of(item) for item in orjson.loads(result.scalar_one())]

    async def facts_of(self, profile_ids: Collection[str]) -> list[ProfileFacts]:
        """Journey's copy of the profiles' facts (those it has), read without locking them."""
        result = await self._execute(
            f"SELECT {_FACTS_ARRAY} FROM {{s}}.profiles p "
            "WHERE p.profile_id = ANY(CAST(:ids AS text[]))",
            {"ids": sorted(profile_ids)},
        )
        return [_facts_of(item) for item in orjson.loads(result.scalar_one())]

    # Memberships and enrolments.

    async def save_memberships(self, changes: Sequence[MembershipChange]) -> None:
        """Write the batch's segment entries and exits (the last change of each pair wins)."""
        last = {(c.segment_id, c.profile_id): c for c in changes}
        entered = [
            {"segment_id": c.segment_id, "profile_id": c.profile_id, "at": c.entered_at.isoformat()}
            for key, c in sorted(last.items())
            if c.entered_at is not None
        ]
        left = [
            {"segment_id": c.segment_id, "profile_id": c.profile_id}
            for key, c in sorted(last.items())
            if c.entered_at is None
        ]
        if entered:
            await self._execute(
                "INSERT INTO {s}.memberships (segment_id, profile_id, entered_at) "
                "SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
                "AS r(segment_id text, profile_id text, at timestamptz) "
                "ON CONFLICT (segment_id, profile_id) DO NOTHING",
                {"rows": _json(entered)},
            )
        if left:
            await self._execute(
                "DELETE FROM {s}.memberships m USING jsonb_to_recordset(CAST(:rows AS jsonb)) "
                "AS r(segment_id text, profile_id text) "
                "WHERE m.segment_id = r.segment_id AND m.profile_id = r.profile_id",
                {"rows": _json(left)},
            )

    async def members_after(self, segment_id: str, cursor: str | None, limit: int) -> list[str]:
        """The segment's members after `cursor`, in profile id order (those with a copy of
        their profile, as every member handled by the consumer has)."""
        result = await self._execute(
            "SELECT m.profile_id FROM {s}.memberships m JOIN {s}.profiles p "
            "ON p.profile_id = m.profile_id WHERE m.segment_id = :segment "
            "AND (CAST(:cursor AS text) IS NULL OR m.profile_id > :cursor) "
            "ORDER BY m.profile_id LIMIT :limit",
            {"segment": segment_id, "cursor": cursor, "limit": limit},
        )
        return [row.profile_id for row in result]

    async def add_enrolment(self, enrolment: Enrolment) -> None:
        await self._execute(
            "INSERT INTO {s}.enrolments (id, journey_id, version, occurrence, segment_id, "
            "per_minute, at, local_time, best_time_within, due_at) VALUES (:id, :journey_id, "
            ":version, :occurrence, :segment_id, :per_minute, :at, :local_time, "
            ":best_time_within, :due_at) ON CONFLICT (id) DO NOTHING",
            {
                "id": enrolment.id,
                "journey_id": enrolment.journey_id,
                "version": enrolment.version,
                "occurrence": enrolment.occurrence,
                "segment_id": enrolment.segment_id,
                "per_minute": enrolment.per_minute,
                "at": enrolment.at,
                "local_time": _iso(enrolment.local_time),
                "best_time_within": enrolment.best_time_within,
                "due_at": enrolment.due_at,
            },
        )

    async def claim_enrolment(self) -> Enrolment | None:
        """The pending enrolment due first, locked; replicas skip each other's."""
        result = await self._execute(
            "SELECT * FROM {s}.enrolments WHERE status = 'pending' AND due_at <= now() "
            "ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED"
        )
        row = result.first()
        return _enrolment(row) if row is not None else None

    async def save_enrolment(self, enrolment: Enrolment) -> None:
        await self._execute(
            "UPDATE {s}.enrolments SET status = :status, started_at = :started_at, "
            "cursor = :cursor, scheduled = :scheduled, slots = CAST(:slots AS jsonb), "
            "due_at = :due_at, updated_at = now() WHERE id = :id",
            {
                "id": enrolment.id,
                "status": enrolment.status,
                "started_at": enrolment.started_at,
                "cursor": enrolment.cursor,
                "scheduled": enrolment.scheduled,
                "slots": _json(enrolment.slots),
                "due_at": enrolment.due_at,
            },
        )

    async def enrolments_of(self, journey_id: str) -> list[Enrolment]:
        result = await self._execute(
            "SELECT * FROM {s}.enrolments WHERE journey_id = :id ORDER BY version, occurrence",
            {"id": journey_id},
        )
        return [_enrolment(row) for row in result]

    async def cancel_enrolments(self, journey_id: str) -> None:
        """No more members are taken (a running tick finishes first: its rows are locked)."""
        await self._execute(
            "UPDATE {s}.enrolments SET status = 'cancelled', updated_at = now() "
            "WHERE journey_id = :id AND status = 'pending'",
            {"id": journey_id},
        )

    # Broadcasts.

    async def insert_broadcast(self, broadcast_id: str, spec: Any) -> None:
        await self._execute(
            "INSERT INTO {s}.broadcasts (id, spec) VALUES (:id, CAST(:spec AS jsonb))",
            {"id": broadcast_id, "spec": _json(spec)},
        )

    async def get_broadcast(self, broadcast_id: str, *, lock: bool = False) -> BroadcastRow | None:
        locking = " FOR UPDATE" if lock else ""
        result = await self._execute(
            "SELECT * FROM {s}.broadcasts WHERE id = :id" + locking, {"id": broadcast_id}
        )
        row = result.first()
        return _broadcast(row) if row is not None else None

    async def list_broadcasts(self) -> list[BroadcastRow]:
        result = await self._execute("SELECT * FROM {s}.broadcasts ORDER BY created_at, id")
        return [_broadcast(row) for row in result]

    async def set_broadcast_status(self, broadcast_id: str, status: str) -> None:
        await self._execute(
            "UPDATE {s}.broadcasts SET status = :status, updated_at = now() WHERE id = :id",
            {"id": broadcast_id, "status": status},
        )

    async def journeys_entered_on(
        self, *, segments: Collection[str], events: Collection[str]
    ) -> Entries:
        """The latest published versions of the active journeys entered on these segments or
        behaviours."""
        entries = Entries({}, {})
        if not segments and not events:
            return entries
        result = await self._execute(
            "SELECT j.id, j.entry_segment, j.entry_event, v.version, "
            "v.definition::text AS definition FROM {s}.journeys j "
            "JOIN {s}.journey_versions v "
            "ON v.journey_id = j.id AND v.version = j.published_version "
            "WHERE j.status = 'active' AND (j.entry_segment = ANY(CAST(:segments AS text[])) "
            "OR j.entry_event = ANY(CAST(:events AS text[]))) ORDER BY j.id",
            {"segments": list(segments), "events": list(events)},
        )
        for row in result:
            journey = _parsed(row.id, row.version, row.definition)
            if row.entry_segment in segments:
                entries.on_segment.setdefault(row.entry_segment, []).append(journey)
            if row.entry_event in events:
                entries.on_event.setdefault(row.entry_event, []).append(journey)
        return entries

    async def journey_versions(
        self, keys: Collection[tuple[str, int]]
    ) -> dict[tuple[str, int], tuple[Journey, bool]]:
        """Parsed versions by (journey, version), each with whether its journey is paused."""
        if not keys:
            return {}
        result = await self._execute(
            "SELECT v.journey_id, v.version, v.definition::text AS definition, j.status "
            "FROM {s}.journey_versions v JOIN {s}.journeys j ON j.id = v.journey_id "
            "JOIN jsonb_to_recordset(CAST(:keys AS jsonb)) AS k(journey_id text, version int) "
            "ON k.journey_id = v.journey_id AND k.version = v.version",
            {"keys": _json([{"journey_id": j, "version": v} for j, v in keys])},
        )
        return {
            (row.journey_id, row.version): (
                _parsed(row.journey_id, row.version, row.definition),
                row.status == "paused",
            )
            for row in result
        }

    # Profiles.

    async def lock_profiles(self, profile_ids: Collection[str]) -> dict[str, ProfileFacts]:
        """The profiles' facts (created empty when new), locked until the transaction ends."""
        return await self._copies.lock(profile_ids)

    async def lock_profiles_if_free(self, profile_ids: Collection[str]) -> dict[str, ProfileFacts]:
        """The profiles no other transaction holds, locked; the others are left for later."""
        return await self._copies.lock_if_free(profile_ids)

    async def save_profiles(self, profiles: Iterable[ProfileFacts]) -> None:
        """Write the profiles' facts, except those still as this store read them."""
        await self._copies.save(profiles)

    async def move_profile(self, survivor: str, merged: str) -> None:
        """Runs and decisions of `merged` become the survivor's, numbered after the survivor's
        own runs; its engagement is added to the survivor's, its messages count for it."""
        names = {"survivor": survivor, "merged": merged}
        # Decisions first: their new numbers come from the survivor's runs before the move.
        await self._execute(
            "UPDATE {s}.decisions d SET profile_id = :survivor, run = d.run + coalesce(("
            "SELECT max(s.run) FROM {s}.runs s WHERE s.journey_id = d.journey_id "
            "AND s.profile_id = :survivor), 0) WHERE d.profile_id = :merged",
            names,
        )
        await self._execute(
            "UPDATE {s}.runs r SET profile_id = :survivor, run = r.run + coalesce(("
            "SELECT max(s.run) FROM {s}.runs s WHERE s.journey_id = r.journey_id "
            "AND s.profile_id = :survivor), 0) WHERE r.profile_id = :merged",
            names,
        )
        await self._execute(
            "WITH moved AS (DELETE FROM {s}.engagement WHERE profile_id = :merged "
            "RETURNING channel, hour, sends, engaged) "
            "INSERT INTO {s}.engagement (profile_id, channel, hour, sends, engaged) "
            "SELECT :survivor, channel, hour, sends, engaged FROM moved "
            "ORDER BY channel, hour ON CONFLICT (profile_id, channel, hour) DO UPDATE SET "
            "sends = {s}.engagement.sends + excluded.sends, "
            "engaged = {s}.engagement.engaged + excluded.engaged",
            names,
        )
        await self._execute(
            "UPDATE {s}.messages SET profile_id = :survivor WHERE profile_id = :merged", names
        )
        await self._execute(
            "WITH moved AS (DELETE FROM {s}.memberships WHERE profile_id = :merged "
            "RETURNING segment_id, entered_at) "
            "INSERT INTO {s}.memberships (segment_id, profile_id, entered_at) "
            "SELECT segment_id, :survivor, entered_at FROM moved ORDER BY segment_id "
            "ON CONFLICT (segment_id, profile_id) DO NOTHING",
            names,
        )
        await self._copies.delete([merged])

    async def erase_profile(self, profile_id: str) -> None:
        """Every row about the person (timers follow their runs); counters, and the
        population's untargeted engagement, hold no one."""
        for table in ("runs", "decisions", "engagement", "messages", "memberships"):
            await self._execute(
                f"DELETE FROM {{s}}.{table} WHERE profile_id = :p", {"p": profile_id}
            )
        # An enrolment's cursor names the last member it took: the one before them instead.
        await self._execute(
            "UPDATE {s}.enrolments e SET cursor = (SELECT max(m.profile_id) FROM "
            "{s}.memberships m WHERE m.segment_id = e.segment_id AND m.profile_id < :p) "
            "WHERE e.cursor = :p",
            {"p": profile_id},
        )
        await self._copies.delete([profile_id])

    # Runs and timers.

    async def runs_of(
        self, profile_ids: Collection[str], goals_since: datetime | None
    ) -> list[SavedRun]:
        """What a batch asks about these profiles' runs: the live ones, each journey's latest,
        and (with `goals_since`) those whose goal may still be reached from then on."""
        result = await self._execute(
            _RUNS + "WHERE r.profile_id = ANY(CAST(:ids AS text[])) "
            "AND (r.status = ANY(CAST(:live AS text[])) "
            "OR (CAST(:goals AS boolean) AND r.goal_reached_at IS NULL "
            "AND (r.goal_until IS NULL OR r.goal_until >= :since)) "
            "OR r.run = (SELECT max(l.run) FROM {s}.runs l "
            "WHERE l.journey_id = r.journey_id AND l.profile_id = r.profile_id))",
            {
                "ids": list(profile_ids),
                "live": list(LIVE),
                "goals": goals_since is not None,
                "since": goals_since,
            },
        )
        return [SavedRun(_run(row), row.goal_until) for row in result]

    async def runs_of_profile(self, profile_id: str, limit: int) -> list[dict[str, Any]]:
        """The person's runs through any journey, with the journey's name, the latest first."""
        result = await self._execute(
            "SELECT r.journey_id, j.name AS journey_name, r.run, r.version, r.node_id, r.status, "
            "r.entered_at, r.updated_at, r.exit_reason, r.goal_reached_at FROM {s}.runs r "
            "JOIN {s}.journeys j ON j.id = r.journey_id WHERE r.profile_id = :profile_id "
            "ORDER BY r.entered_at DESC, r.journey_id, r.run DESC LIMIT :limit",
            {"profile_id": profile_id, "limit": limit},
        )
        return [row._asdict() for row in result]

    async def lock_runs(self, keys: Collection[RunKey]) -> dict[RunKey, SavedRun]:
        """These runs (those that still exist), locked in key order."""
        if not keys:
            return {}
        result = await self._execute(
            _RUNS + "JOIN jsonb_to_recordset(CAST(:keys AS jsonb)) "
            "AS k(journey_id text, profile_id text, run int) "
            "ON k.journey_id = r.journey_id AND k.profile_id = r.profile_id AND k.run = r.run "
            "ORDER BY r.journey_id, r.profile_id, r.run FOR UPDATE OF r",
            {"keys": _json([{"journey_id": j, "profile_id": p, "run": n} for j, p, n in keys])},
        )
        return {
            (row.journey_id, row.profile_id, row.run): SavedRun(_run(row), row.goal_until)
            for row in result
        }

    async def save_runs(self, saved: Sequence[SavedRun]) -> None:
        """Store the runs, and their timers: one while a run waits (or, resumed, holds), none
        otherwise."""
        if not saved:
            return
        await self._execute(
            "INSERT INTO {s}.runs (journey_id, profile_id, run, version, node_id, status, "
            "entered_at, trigger, arms, requests, exit_reason, goal_until, goal_reached_at, "
            "timing, channels) "
            "SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(journey_id text, "
            "profile_id text, run int, version int, node_id text, status text, "
            "entered_at timestamptz, trigger jsonb, arms jsonb, requests jsonb, "
            "exit_reason text, goal_until timestamptz, goal_reached_at timestamptz, "
            "timing jsonb, channels jsonb) "
            "ON CONFLICT (journey_id, profile_id, run) DO UPDATE SET node_id = excluded.node_id, "
            "status = excluded.status, trigger = excluded.trigger, arms = excluded.arms, "
            "requests = excluded.requests, exit_reason = excluded.exit_reason, "
            "goal_reached_at = excluded.goal_reached_at, timing = excluded.timing, "
            "channels = excluded.channels, updated_at = now()",
            {"rows": _json([_run_row(s) for s in saved])},
        )
        timed = [_timer_row(s.run) for s in saved if s.has_timer]
        untimed = [_key_row(s.run) for s in saved if not s.has_timer]
        if untimed:
            await self._execute(
                "DELETE FROM {s}.timers t USING jsonb_to_recordset(CAST(:rows AS jsonb)) "
                "AS k(journey_id text, profile_id text, run int) WHERE t.journey_id = "
                "k.journey_id AND t.profile_id = k.profile_id AND t.run = k.run",
                {"rows": _json(untimed)},
            )
        if timed:
            await self._execute(
                "INSERT INTO {s}.timers (journey_id, profile_id, run, node_id, due_at) "
                "SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS k(journey_id text, "
                "profile_id text, run int, node_id text, due_at timestamptz) "
                "ON CONFLICT (journey_id, profile_id, run) "
                "DO UPDATE SET node_id = excluded.node_id, due_at = excluded.due_at",
                {"rows": _json(timed)},
            )

    async def claim_due_timers(self, limit: int) -> list[DueTimer]:
        """Due timers, locked; replicas skip each other's (FOR UPDATE SKIP LOCKED)."""
        result = await self._execute(
            "SELECT journey_id, profile_id, run, node_id, due_at FROM {s}.timers "
            "WHERE due_at <= now() ORDER BY due_at LIMIT :limit FOR UPDATE SKIP LOCKED",
            {"limit": limit},
        )
        return [
            DueTimer(row.journey_id, row.profile_id, row.run, row.node_id, row.due_at)
            for row in result
        ]

    async def delete_timers(self, timers: Sequence[DueTimer]) -> None:
        if not timers:
            return
        await self._execute(
            "DELETE FROM {s}.timers t USING jsonb_to_recordset(CAST(:rows AS jsonb)) "
            "AS k(journey_id text, profile_id text, run int) WHERE t.journey_id = "
            "k.journey_id AND t.profile_id = k.profile_id AND t.run = k.run",
            {
                "rows": _json(
                    [
                        {"journey_id": t.journey_id, "profile_id": t.profile_id, "run": t.run}
                        for t in timers
                    ]
                )
            },
        )

    # Engagement evidence and learned decisions.

    async def messages(self, request_ids: Collection[str]) -> list[MessageRecord]:
        if not request_ids:
            return []
        result = await self._execute(
            "SELECT request_id, profile_id, channel, targeted, hour, engaged FROM {s}.messages "
            "WHERE request_id = ANY(CAST(:ids AS text[]))",
            {"ids": list(request_ids)},
        )
        return [
            MessageRecord(
                row.request_id, row.profile_id, row.channel, row.targeted, row.hour, row.engaged
            )
            for row in result
        ]

    async def save_messages(self, records: Sequence[MessageRecord]) -> None:
        """Write the records; each write restarts the record's retention."""
        if not records:
            return
        await self._execute(
            "INSERT INTO {s}.messages (request_id, profile_id, channel, targeted, hour, engaged) "
            "SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(request_id text, "
            "profile_id text, channel text, targeted boolean, hour smallint, engaged boolean) "
            "ORDER BY request_id ON CONFLICT (request_id) DO UPDATE SET "
            "profile_id = excluded.profile_id, targeted = excluded.targeted, "
            "hour = excluded.hour, engaged = excluded.engaged, updated_at = now()",
            {"rows": _json([dataclasses.asdict(record) for record in records])},
        )

    async def save_engagement(self, changes: EngagementChanges) -> None:
        """Write the changed records and add the counts, in key order (no deadlocks)."""
        await self.save_messages(changes.messages)
        people = [
            {"profile_id": p, "channel": c, "hour": h, "sends": t.sends, "engaged": t.engaged}
            for (p, c, h), t in changes.people.items()
        ]
        if people:
            await self._execute(
                "INSERT INTO {s}.engagement (profile_id, channel, hour, sends, engaged) "
                "SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(profile_id text, "
                "channel text, hour smallint, sends int, engaged int) "
                "ORDER BY profile_id, channel, hour "
                "ON CONFLICT (profile_id, channel, hour) DO UPDATE SET "
                "sends = {s}.engagement.sends + excluded.sends, "
                "engaged = {s}.engagement.engaged + excluded.engaged",
                {"rows": _json(people)},
            )
        untargeted = [
            {"channel": c, "hour": h, "sends": t.sends, "engaged": t.engaged}
            for (c, h), t in changes.untargeted.items()
        ]
        if untargeted:
            await self._execute(
                "INSERT INTO {s}.untargeted_engagement (channel, hour, sends, engaged) "
                "SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(channel text, "
                "hour smallint, sends bigint, engaged bigint) ORDER BY channel, hour "
                "ON CONFLICT (channel, hour) DO UPDATE SET "
                "sends = {s}.untargeted_engagement.sends + excluded.sends, "
                "engaged = {s}.untargeted_engagement.engaged + excluded.engaged",
                {"rows": _json(untargeted)},
            )

    async def engagement_of(self, profile_ids: Collection[str]) -> list[CountRow]:
        result = await self._execute(
            "SELECT profile_id, channel, hour, sends, engaged FROM {s}.engagement "
            "WHERE profile_id = ANY(CAST(:ids AS text[]))",
            {"ids": list(profile_ids)},
        )
        return [_count_row(row) for row in result]

    async def engagement_sample(self, people: int) -> list[CountRow]:
        """The counts of up to `people` profiles: a fixed pseudo-random sample (by the hash of
        their id), so that successive fits see mostly the same people."""
        result = await self._execute(
            "SELECT e.profile_id, e.channel, e.hour, e.sends, e.engaged FROM {s}.engagement e "
            "JOIN (SELECT profile_id FROM (SELECT DISTINCT profile_id FROM {s}.engagement) d "
            "ORDER BY md5(profile_id) LIMIT :people) p ON p.profile_id = e.profile_id",
            {"people": people},
        )
        return [_count_row(row) for row in result]

    async def untargeted_engagement(self) -> list[PopulationRow]:
        result = await self._execute(
            "SELECT channel, hour, sends, engaged FROM {s}.untargeted_engagement"
        )
        return [PopulationRow(row.channel, row.hour, row.sends, row.engaged) for row in result]

    async def save_decisions(self, decisions: Sequence[Decision]) -> None:
        if not decisions:
            return
        await self._execute(
            "INSERT INTO {s}.decisions (journey_id, version, node_id, profile_id, run, kind, "
            "decided_at, explored, probability, channel, hour, wake_at, ranking, "
            "probabilities, request_id) "
            "SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(journey_id text, "
            "version int, node_id text, profile_id text, run int, kind text, "
            "decided_at timestamptz, explored boolean, probability float8, channel text, "
            "hour smallint, wake_at timestamptz, ranking jsonb, probabilities jsonb, "
            "request_id text)",
            {"rows": _json([_decision_row(decision) for decision in decisions])},
        )

    async def decisions(
        self, journey_id: str, profile_id: str | None, limit: int
    ) -> list[Decision]:
        """The journey's decisions, newest first (one profile's when given)."""
        result = await self._execute(
            "SELECT * FROM {s}.decisions WHERE journey_id = :j "
            "AND (CAST(:p AS text) IS NULL OR profile_id = :p) ORDER BY id DESC LIMIT :limit",
            {"j": journey_id, "p": profile_id, "limit": limit},
        )
        return [_decision(row) for row in result]

    async def forget_runs(self, keep_days: float, limit: int) -> int:
        """Finished runs past `keep_days` (see `_FORGET_RUNS`), at most `limit` of them."""
        result = await self._execute(_FORGET_RUNS, {"seconds": keep_days * 86_400, "limit": limit})
        return int(result.rowcount or 0)

    async def forget_messages(self, days: float) -> int:
        """Messages untouched for `days`: a late open of one no longer counts."""
        result = await self._execute(
            "DELETE FROM {s}.messages WHERE updated_at < now() - make_interval(secs => :seconds)",
            {"seconds": days * 86_400},
        )
        return int(result.rowcount or 0)

    async def forget_decisions(self, days: float) -> int:
        result = await self._execute(
            "DELETE FROM {s}.decisions WHERE decided_at < now() - make_interval(secs => :seconds)",
            {"seconds": days * 86_400},
        )
        return int(result.rowcount or 0)

    # Stats.

    async def add_counters(self, counters: Counter[tuple[str, int, str, str]]) -> None:
        """Add to the counters in key order, so concurrent transactions never deadlock."""
        rows = [
            {"journey_id": j, "version": v, "node_id": n, "counter": c, "value": value}
            for (j, v, n, c), value in sorted(counters.items())
            if value
        ]
        if not rows:
            return
        await self._execute(
            "INSERT INTO {s}.stats (journey_id, version, node_id, counter, value) "
            "SELECT r.* FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(journey_id text, "
            "version int, node_id text, counter text, value bigint) "
            "WHERE EXISTS (SELECT 1 FROM {s}.journeys j WHERE j.id = r.journey_id) "
            "ORDER BY r.journey_id, r.version, r.node_id, r.counter "
            "ON CONFLICT (journey_id, version, node_id, counter) "
            "DO UPDATE SET value = {s}.stats.value + excluded.value",
            {"rows": _json(rows)},
        )

    async def counters(self, journey_id: str) -> list[StatRow]:
        result = await self._execute(
            "SELECT version, node_id, counter, value FROM {s}.stats WHERE journey_id = :j",
            {"j": journey_id},
        )
        return [StatRow(row.version, row.node_id, row.counter, row.value) for row in result]

    async def waiting(self, journey_id: str) -> list[StatRow]:
        """Runs at each node now, waiting or held, as `waiting` counters."""
        result = await self._execute(
            "SELECT version, node_id, count(*) AS value FROM {s}.runs WHERE journey_id = :j "
            "AND status IN ('waiting', 'held') GROUP BY version, node_id",
            {"j": journey_id},
        )
        return [StatRow(row.version, row.node_id, "waiting", row.value) for row in result]


def _journey(row: Any) -> JourneyRow | None:
    if row is None:
        return None
    return JourneyRow(
        row.id,
        row.name,
        row.description,
        row.status,
        row.draft,
        row.published_version,
        row.created_at,
        row.updated_at,
        row.kind,
    )


def _broadcast(row: Any) -> BroadcastRow:
    return BroadcastRow(row.id, row.spec, row.status, row.created_at, row.updated_at)


def _enrolment(row: Any) -> Enrolment:
    local_time = datetime.fromisoformat(row.local_time) if row.local_time else None
    return Enrolment(
        id=row.id,
        journey_id=row.journey_id,
        version=row.version,
        segment_id=row.segment_id,
        per_minute=row.per_minute,
        due_at=row.due_at,
        at=row.at,
        local_time=local_time,
        best_time_within=row.best_time_within,
        occurrence=row.occurrence,
        status=row.status,
        started_at=row.started_at,
        cursor=row.cursor,
        scheduled=row.scheduled,
        slots=dict(row.slots),
    )


def _run(row: Any) -> Run:
    return Run(
        journey_id=row.journey_id,
        version=row.version,
        profile_id=row.profile_id,
        number=row.run,
        node_id=row.node_id,
        status=row.status,
        entered_at=row.entered_at,
        trigger=Trigger.from_json(row.trigger),
        arms=dict(row.arms),
        requests=dict(row.requests),
        exit_reason=row.exit_reason,
        goal_reached_at=row.goal_reached_at,
        due_at=row.due_at,
        timing=Timing.from_json(row.timing) if row.timing is not None else None,
        channels={node: ChannelRanking.from_json(raw) for node, raw in row.channels.items()},
    )


def _key_row(run: Run) -> dict[str, Any]:
    return {"journey_id": run.journey_id, "profile_id": run.profile_id, "run": run.number}


def _timer_row(run: Run) -> dict[str, Any]:
    assert run.due_at is not None
    return {**_key_row(run), "node_id": run.node_id, "due_at": run.due_at.isoformat()}


def _run_row(saved: SavedRun) -> dict[str, Any]:
    # Times as ISO text: json, which writes what orjson cannot, knows no datetimes.
    run = saved.run
    return {
        **_key_row(run),
        "version": run.version,
        "node_id": run.node_id,
        "status": run.status,
        "entered_at": run.entered_at.isoformat(),
        "trigger": run.trigger.to_json(),
        "arms": run.arms,
        "requests": run.requests,
        "exit_reason": run.exit_reason,
        "goal_until": _iso(saved.goal_until),
        "goal_reached_at": _iso(run.goal_reached_at),
        "timing": run.timing.to_json() if run.timing is not None else None,
        "channels": {node: ranking.to_json() for node, ranking in run.channels.items()},
    }


def _count_row(row: Any) -> CountRow:
    return CountRow(row.profile_id, row.channel, row.hour, row.sends, row.engaged)


def _decision_row(decision: Decision) -> dict[str, Any]:
    return {
        **dataclasses.asdict(decision),
        "decided_at": decision.decided_at.isoformat(),
        "wake_at": _iso(decision.wake_at),
    }


def _decision(row: Any) -> Decision:
    return Decision(
        journey_id=row.journey_id,
        version=row.version,
        node_id=row.node_id,
        profile_id=row.profile_id,
        run=row.run,
        kind=row.kind,
        decided_at=row.decided_at,
        explored=row.explored,
        probability=row.probability,
        channel=row.channel,
        hour=row.hour,
        wake_at=row.wake_at,
        ranking=tuple(row.ranking),
        probabilities=dict(row.probabilities),
        request_id=row.request_id,
    )


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def finished_runs_retained(schema: str, keep_days: float) -> Retained:
    """Finished runs kept `keep_days` after their last change (see `_FORGET_RUNS`)."""
    return Retained(
        "finished runs",
        lambda session, limit: JourneyStore(session, schema).forget_runs(keep_days, limit),
    )

"""The journey service's queries; nothing else touches its tables."""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.db import checked_schema
from services.journey.engine import LIVE, Run, Trigger, goal_deadline
from services.journey.graph import Journey
from services.journey.profiles import ProfileFacts


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


# A run with its timer's due time, if it has one.
_RUNS = (
    "SELECT r.journey_id, r.profile_id, r.run, r.version, r.node_id, r.status, r.entered_at, "
    "r.trigger, r.arms, r.requests, r.exit_reason, r.goal_reached_at, t.due_at "
    "FROM {s}.runs r LEFT JOIN {s}.timers t "
    "ON t.journey_id = r.journey_id AND t.profile_id = r.profile_id AND t.run = r.run "
)


class JourneyStore:
    """Queries over one session (the caller's transaction) in the service's schema."""

    def __init__(self, session: AsyncSession, schema: str) -> None:
        self._session = session
        self._schema = checked_schema(schema)

    @property
    def session(self) -> AsyncSession:
        return self._session

    async def _execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        return await self._session.execute(text(sql.replace("{s}", self._schema)), params or {})

    # Journeys and versions.

    async def insert_journey(
        self, journey_id: str, name: str, description: str, draft: Any
    ) -> JourneyRow | None:
        result = await self._execute(
            "INSERT INTO {s}.journeys (id, name, description, draft) "
            "VALUES (:id, :name, :description, CAST(:draft AS jsonb)) "
            "ON CONFLICT (id) DO NOTHING RETURNING *",
            {"id": journey_id, "name": name, "description": description, "draft": _json(draft)},
        )
        return _journey(result.first())

    async def get_journey(self, journey_id: str, *, lock: bool = False) -> JourneyRow | None:
        locking = " FOR UPDATE" if lock else ""
        result = await self._execute(
            "SELECT * FROM {s}.journeys WHERE id = :id" + locking, {"id": journey_id}
        )
        return _journey(result.first())

    async def list_journeys(self) -> list[JourneyRow]:
        result = await self._execute("SELECT * FROM {s}.journeys ORDER BY id")
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
        """Store the draft as the next version and make it the one new profiles enter."""
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
                "segment": journey.entry.segment,
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

    async def release_held_runs(self, journey_id: str) -> int:
        """Resume: every run held at a send node gets a timer due now."""
        result = await self._execute(
            "INSERT INTO {s}.timers (journey_id, profile_id, run, node_id, due_at) "
            "SELECT journey_id, profile_id, run, node_id, now() FROM {s}.runs "
            "WHERE journey_id = :id AND status = 'held' ON CONFLICT DO NOTHING",
            {"id": journey_id},
        )
        return int(result.rowcount or 0)

    async def journeys_entered_on(
        self, *, segment: str | None = None, event: str | None = None
    ) -> list[Journey]:
        """The latest published versions of the active journeys with this entry."""
        column, value = (
            ("entry_segment", segment) if segment is not None else ("entry_event", event)
        )
        result = await self._execute(
            "SELECT j.id, v.version, v.definition::text AS definition FROM {s}.journeys j "
            "JOIN {s}.journey_versions v "
            "ON v.journey_id = j.id AND v.version = j.published_version "
            f"WHERE j.status = 'active' AND j.{column} = :value ORDER BY j.id",
            {"value": value},
        )
        return [_parsed(row.id, row.version, row.definition) for row in result]

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
        ids = sorted(profile_ids)
        await self._execute(
            "INSERT INTO {s}.profiles (profile_id) SELECT unnest(CAST(:ids AS text[])) "
            "ON CONFLICT DO NOTHING",
            {"ids": ids},
        )
        return await self._select_profiles(ids, "FOR UPDATE")

    async def lock_profiles_if_free(self, profile_ids: Collection[str]) -> dict[str, ProfileFacts]:
        """The profiles no other transaction holds, locked; the others are left for later."""
        return await self._select_profiles(sorted(profile_ids), "FOR UPDATE SKIP LOCKED")

    async def _select_profiles(self, ids: list[str], locking: str) -> dict[str, ProfileFacts]:
        result = await self._execute(
            "SELECT profile_id, traits, tags, lifecycle_stage, scores FROM {s}.profiles "
            f"WHERE profile_id = ANY(CAST(:ids AS text[])) ORDER BY profile_id {locking}",
            {"ids": ids},
        )
        return {
            row.profile_id: ProfileFacts(
                row.profile_id, row.traits, row.tags, row.lifecycle_stage, row.scores
            )
            for row in result
        }

    async def save_profiles(self, profiles: Iterable[ProfileFacts]) -> None:
        rows = [
            {
                "profile_id": p.profile_id,
                "traits": p.traits,
                "tags": p.tags,
                "lifecycle_stage": p.lifecycle_stage,
                "scores": p.scores,
            }
            for p in profiles
        ]
        if not rows:
            return
        await self._execute(
            "INSERT INTO {s}.profiles (profile_id, traits, tags, lifecycle_stage, scores) "
            "SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(profile_id text, "
            "traits jsonb, tags jsonb, lifecycle_stage text, scores jsonb) "
            "ON CONFLICT (profile_id) DO UPDATE SET traits = excluded.traits, "
            "tags = excluded.tags, lifecycle_stage = excluded.lifecycle_stage, "
            "scores = excluded.scores",
            {"rows": _json(rows)},
        )

    async def move_profile(self, survivor: str, merged: str) -> None:
        """Runs of `merged` become the survivor's, numbered after the survivor's own."""
        await self._execute(
            "UPDATE {s}.runs r SET profile_id = :survivor, run = r.run + coalesce(("
            "SELECT max(s.run) FROM {s}.runs s WHERE s.journey_id = r.journey_id "
            "AND s.profile_id = :survivor), 0) WHERE r.profile_id = :merged",
            {"survivor": survivor, "merged": merged},
        )
        await self._execute(
            "DELETE FROM {s}.profiles WHERE profile_id = :merged", {"merged": merged}
        )

    async def erase_profile(self, profile_id: str) -> None:
        """Every row about the person (timers follow their runs); counters hold no one."""
        await self._execute("DELETE FROM {s}.runs WHERE profile_id = :p", {"p": profile_id})
        await self._execute("DELETE FROM {s}.profiles WHERE profile_id = :p", {"p": profile_id})

    # Runs and timers.

    async def latest_run(self, journey_id: str, profile_id: str) -> Run | None:
        result = await self._execute(
            _RUNS + "WHERE r.journey_id = :j AND r.profile_id = :p ORDER BY r.run DESC LIMIT 1",
            {"j": journey_id, "p": profile_id},
        )
        row = result.first()
        return None if row is None else _run(row)

    async def live_runs(self, profile_id: str) -> list[Run]:
        result = await self._execute(
            _RUNS + "WHERE r.profile_id = :p AND r.status = ANY(CAST(:live AS text[])) "
            "ORDER BY r.journey_id, r.run",
            {"p": profile_id, "live": list(LIVE)},
        )
        return [_run(row) for row in result]

    async def goal_runs(self, profile_id: str, occurred_at: datetime) -> list[Run]:
        """Runs whose goal window holds this moment and whose goal is not reached yet."""
        result = await self._execute(
            _RUNS + "WHERE r.profile_id = :p AND r.goal_reached_at IS NULL "
            "AND r.entered_at <= :at AND (r.goal_until IS NULL OR r.goal_until >= :at) "
            "ORDER BY r.journey_id, r.run",
            {"p": profile_id, "at": occurred_at},
        )
        return [_run(row) for row in result]

    async def lock_run(self, journey_id: str, profile_id: str, number: int) -> Run | None:
        result = await self._execute(
            _RUNS + "WHERE r.journey_id = :j AND r.profile_id = :p AND r.run = :r FOR UPDATE OF r",
            {"j": journey_id, "p": profile_id, "r": number},
        )
        row = result.first()
        return None if row is None else _run(row)

    async def save_run(self, run: Run, journey: Journey) -> None:
        """Store the run, and its timer: one while it waits (or, resumed, holds), none otherwise."""
        await self._execute(
            "INSERT INTO {s}.runs (journey_id, profile_id, run, version, node_id, status, "
            "entered_at, trigger, arms, requests, exit_reason, goal_until, goal_reached_at) "
            "VALUES (:j, :p, :r, :version, :node, :status, :entered_at, CAST(:trigger AS jsonb), "
            "CAST(:arms AS jsonb), CAST(:requests AS jsonb), :reason, :goal_until, :goal_at) "
            "ON CONFLICT (journey_id, profile_id, run) DO UPDATE SET node_id = excluded.node_id, "
            "status = excluded.status, trigger = excluded.trigger, arms = excluded.arms, "
            "requests = excluded.requests, exit_reason = excluded.exit_reason, "
            "goal_reached_at = excluded.goal_reached_at, updated_at = now()",
            {
                "j": run.journey_id,
                "p": run.profile_id,
                "r": run.number,
                "version": run.version,
                "node": run.node_id,
                "status": run.status,
                "entered_at": run.entered_at,
                "trigger": _json(run.trigger.to_json()),
                "arms": _json(run.arms),
                "requests": _json(run.requests),
                "reason": run.exit_reason,
                "goal_until": goal_deadline(journey, run.entered_at),
                "goal_at": run.goal_reached_at,
            },
        )
        keys = {"j": run.journey_id, "p": run.profile_id, "r": run.number}
        if run.status in ("waiting", "held") and run.due_at is not None:
            await self._execute(
                "INSERT INTO {s}.timers (journey_id, profile_id, run, node_id, due_at) "
                "VALUES (:j, :p, :r, :node, :due) ON CONFLICT (journey_id, profile_id, run) "
                "DO UPDATE SET node_id = excluded.node_id, due_at = excluded.due_at",
                {**keys, "node": run.node_id, "due": run.due_at},
            )
        else:
            await self._execute(
                "DELETE FROM {s}.timers WHERE journey_id = :j AND profile_id = :p AND run = :r",
                keys,
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

    async def delete_timer(self, timer: DueTimer) -> None:
        await self._execute(
            "DELETE FROM {s}.timers WHERE journey_id = :j AND profile_id = :p AND run = :r",
            {"j": timer.journey_id, "p": timer.profile_id, "r": timer.run},
        )

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
    )

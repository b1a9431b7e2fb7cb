"""The segment service's queries; nothing else touches its tables."""

from __future__ import annotations

import functools
import zlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.profiles import ProfileCopies
from libs.common.retention import Retained, batched_delete, older_than
from libs.common.store import SchemaStore
from services.segment.compiler import SqlCompiler
from services.segment.rules import (
    EVALUATE_PREFIX,
    EVERYTHING,
    Behaviour,
    Condition,
    ProfileFacts,
    SegmentRule,
    Transition,
)

_FORGET_BEHAVIOURS = batched_delete("behaviours", older_than("occurred_at"))


@dataclass(frozen=True)
class SegmentRow:
    id: str
    name: str
    description: str
    version: int
    conditions: Any
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Member:
    profile_id: str
    segment_version: int
    entered_at: datetime


@dataclass(frozen=True)
class DueTimer:
    segment_id: str
    profile_id: str
    due_at: datetime


@dataclass(frozen=True)
class BulkChanges:
    """Who a bulk evaluation let in and who it let go."""

    entered: list[str]
    exited: list[str]


@functools.lru_cache(maxsize=4096)
def _parsed_rule(segment_id: str, version: int, conditions_json: str) -> SegmentRule:
    # Keyed by the definition's text too: a segment deleted and created again restarts at 1.
    return SegmentRule.parse(segment_id, version, orjson.loads(conditions_json))


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


class SegmentStore(SchemaStore):
    """Segment's queries (SchemaStore: the caller's transaction, the service's schema)."""

    def __init__(self, session: AsyncSession, schema: str) -> None:
        super().__init__(session, schema)
        self._copies = ProfileCopies(session, self._schema, ProfileFacts)

    # Evaluation lock: bulk evaluation must see every profile as of one moment, so it holds the
    # lock alone while batches and timers share it.

    def _lock_key(self) -> int:
        return zlib.crc32(f"closeloop.segment.evaluation.{self._schema}".encode())

    async def hold_evaluation_lock(self, *, exclusive: bool) -> None:
        function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        await self._execute(f"SELECT {function}(:key)", {"key": self._lock_key()})

    # Profiles, behaviours, memberships.

    async def lock_profiles(self, profile_ids: Collection[str]) -> dict[str, ProfileFacts]:
        """The profiles' facts (created empty when new), locked until the transaction ends."""
        return await self._copies.lock(profile_ids)

    async def lock_profiles_if_free(self, profile_ids: Collection[str]) -> dict[str, ProfileFacts]:
        """The profiles no other transaction holds, locked; the others are left for later."""
        return await self._copies.lock_if_free(profile_ids)

    async def save_profiles(self, profiles: Iterable[ProfileFacts]) -> None:
        """Write the profiles' facts, except those still as this store read them."""
        await self._copies.save(profiles)

    async def forget_behaviours(self, keep_days: float, limit: int) -> int:
        """Behaviours that happened more than `keep_days` ago, at most `limit` of them."""
        result = await self._execute(
            _FORGET_BEHAVIOURS, {"seconds": keep_days * 86_400, "limit": limit}
        )
        return int(result.rowcount or 0)

    async def record_behaviours(self, rows: Sequence[tuple[str, str, datetime, Any]]) -> None:
        """Store (profile, event, occurred_at, properties) rows."""
        if not rows:
            return
        await self._execute(
            "INSERT INTO {s}.behaviours (profile_id, event, occurred_at, properties) "
            "SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(profile_id text, "
            "event text, occurred_at timestamptz, properties jsonb)",
            {
                "rows": _json(
                    [
                        {"profile_id": p, "event": e, "occurred_at": t, "properties": props}
                        for p, e, t, props in rows
                    ]
                )
            },
        )

    async def behaviours_since(
        self, events: Sequence[str], since: datetime, limit: int
    ) -> tuple[str, bool]:
        """The named behaviours from `since` on, oldest first, `limit` at most, as one JSON array
        built by PostgreSQL (a dry run reads hundreds of thousands); and whether more were left."""
        params = {"events": list(events), "since": since, "limit": limit}
        rows = await self._execute(
            "SELECT coalesce(json_agg(json_build_object('profile_id', b.profile_id, "
            "'event', b.event, 'occurred_at', b.occurred_at, 'properties', b.properties) "
            "ORDER BY b.occurred_at, b.profile_id), '[]')::text FROM (SELECT * FROM {s}.behaviours "
            "WHERE event = ANY(CAST(:events AS text[])) AND occurred_at >= :since "
            "ORDER BY occurred_at, profile_id LIMIT :limit) b",
            params,
        )
        more = await self._execute(
            "SELECT EXISTS (SELECT 1 FROM {s}.behaviours "
            "WHERE event = ANY(CAST(:events AS text[])) AND occurred_at >= :since "
            "ORDER BY occurred_at, profile_id OFFSET :limit)",
            params,
        )
        return str(rows.scalar_one()), bool(more.scalar_one())

    async def load_memberships(self, profiles: Mapping[str, ProfileFacts]) -> None:
        result = await self._execute(
            "SELECT profile_id, segment_id FROM {s}.memberships "
            "WHERE profile_id = ANY(CAST(:ids AS text[]))",
            {"ids": list(profiles)},
        )
        for row in result:
            profiles[row.profile_id].segments.add(row.segment_id)

    async def load_behaviours(
        self, profiles: Mapping[str, ProfileFacts], events: Collection[str]
    ) -> None:
        result = await self._execute(
            "SELECT profile_id, event, occurred_at, properties FROM {s}.behaviours "
            "WHERE profile_id = ANY(CAST(:ids AS text[])) AND event = ANY(CAST(:events AS text[]))",
            {"ids": list(profiles), "events": list(events)},
        )
        for row in result:
            behaviours = profiles[row.profile_id].behaviours.setdefault(row.event, [])
            behaviours.append(Behaviour(row.occurred_at, row.properties))

    async def move_profiles(self, survivor: str, merged: Sequence[str]) -> None:
        """Give the survivor the merged profiles' behaviours and memberships; drop the rest."""
        params = {"survivor": survivor, "merged": list(merged)}
        await self._execute(
            "UPDATE {s}.behaviours SET profile_id = :survivor "
            "WHERE profile_id = ANY(CAST(:merged AS text[]))",
            params,
        )
        await self._execute(
            "INSERT INTO {s}.memberships (segment_id, profile_id, segment_version, entered_at) "
            "SELECT segment_id, :survivor, segment_version, entered_at FROM {s}.memberships "
            "WHERE profile_id = ANY(CAST(:merged AS text[])) ON CONFLICT DO NOTHING",
            params,
        )
        await self._delete_profile_rows(merged, ("memberships", "timers"))
        await self._copies.delete(merged)

    async def erase_profiles(self, profile_ids: Sequence[str]) -> None:
        await self._delete_profile_rows(profile_ids, ("behaviours", "memberships", "timers"))
        await self._copies.delete(profile_ids)

    async def _delete_profile_rows(self, profile_ids: Sequence[str], tables: Sequence[str]) -> None:
        for table in tables:
            await self._execute(
                f"DELETE FROM {{s}}.{table} WHERE profile_id = ANY(CAST(:ids AS text[]))",
                {"ids": list(profile_ids)},
            )

    # Rules, transitions, timers.

    async def rules_touched_by(self, keys: Collection[str]) -> list[SegmentRule]:
        """The segments whose rules read one of the keys (or are named by an `evaluate:` key)."""
        named = [
            key.removeprefix(EVALUATE_PREFIX) for key in keys if key.startswith(EVALUATE_PREFIX)
        ]
        result = await self._execute(
            "SELECT id, version, CAST(conditions AS text) AS conditions FROM {s}.segments "
            "WHERE :everything OR refs && CAST(:keys AS text[]) "
            "OR id = ANY(CAST(:named AS text[]))",
            {"everything": EVERYTHING in keys, "keys": list(keys), "named": named},
        )
        return [_parsed_rule(row.id, row.version, row.conditions) for row in result]

    async def record_transitions(self, transitions: Sequence[Transition], at: datetime) -> None:
        rows = [
            {"segment_id": t.segment_id, "profile_id": t.profile_id, "version": t.version}
            for t in transitions
        ]
        entered = [row for row, t in zip(rows, transitions, strict=True) if t.entered]
        exited = [row for row, t in zip(rows, transitions, strict=True) if not t.entered]
        recordset = (
            "jsonb_to_recordset(CAST(:rows AS jsonb)) "
            "AS r(segment_id text, profile_id text, version int)"
        )
        if exited:
            await self._execute(
                f"DELETE FROM {{s}}.memberships m USING {recordset} "
                "WHERE m.segment_id = r.segment_id AND m.profile_id = r.profile_id",
                {"rows": _json(exited)},
            )
        if entered:
            await self._execute(
                "INSERT INTO {s}.memberships (segment_id, profile_id, segment_version, entered_at) "
                f"SELECT r.segment_id, r.profile_id, r.version, :at FROM {recordset} "
                "ON CONFLICT DO NOTHING",
                {"rows": _json(entered), "at": at},
            )

    async def set_timers(self, timers: Mapping[tuple[str, str], datetime | None]) -> None:
        """Schedule each (segment, profile) timer at its time, or drop it when it has none."""
        due = [
            {"segment_id": s, "profile_id": p, "due_at": at}
            for (s, p), at in timers.items()
            if at is not None
        ]
        dropped = [
            {"segment_id": s, "profile_id": p} for (s, p), at in timers.items() if at is None
        ]
        if dropped:
            await self._execute(
                "DELETE FROM {s}.timers t USING jsonb_to_recordset(CAST(:rows AS jsonb)) "
                "AS r(segment_id text, profile_id text) "
                "WHERE t.segment_id = r.segment_id AND t.profile_id = r.profile_id",
                {"rows": _json(dropped)},
            )
        if due:
            await self._execute(
                "INSERT INTO {s}.timers (segment_id, profile_id, due_at) "
                "SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
                "AS r(segment_id text, profile_id text, due_at timestamptz) "
                "ON CONFLICT (segment_id, profile_id) DO UPDATE SET due_at = excluded.due_at",
                {"rows": _json(due)},
            )

    async def claim_due_timers(self, limit: int) -> list[DueTimer]:
        """Due timers no other worker holds, locked until the transaction ends."""
        result = await self._execute(
            "SELECT segment_id, profile_id, due_at FROM {s}.timers WHERE due_at <= now() "
            "ORDER BY due_at LIMIT :limit FOR UPDATE SKIP LOCKED",
            {"limit": limit},
        )
        return [DueTimer(row.segment_id, row.profile_id, row.due_at) for row in result]

    async def delete_timers(self, timers: Sequence[DueTimer]) -> None:
        await self.set_timers({(t.segment_id, t.profile_id): None for t in timers})

    # Segments.

    async def insert_segment(
        self, segment_id: str, name: str, description: str, conditions: Any, refs: list[str]
    ) -> SegmentRow | None:
        """The new segment at version 1, or None when the id is taken."""
        result = await self._execute(
            "INSERT INTO {s}.segments (id, name, description, version, conditions, refs) "
            "VALUES (:id, :name, :description, 1, CAST(:conditions AS jsonb), "
            "CAST(:refs AS text[])) ON CONFLICT (id) DO NOTHING RETURNING *",
            {
                "id": segment_id,
                "name": name,
                "description": description,
                "conditions": _json(conditions),
                "refs": refs,
            },
        )
        row = result.one_or_none()
        return _segment(row) if row is not None else None

    async def update_segment(
        self, segment_id: str, name: str, description: str, conditions: Any, refs: list[str]
    ) -> tuple[SegmentRow, bool] | None:
        """The segment after the change, and whether its rules changed (a new version)."""
        result = await self._execute(
            "UPDATE {s}.segments AS seg SET name = :name, description = :description, "
            "conditions = CAST(:conditions AS jsonb), refs = CAST(:refs AS text[]), "
            "version = CASE WHEN prev.conditions = CAST(:conditions AS jsonb) THEN prev.version "
            "ELSE prev.version + 1 END, updated_at = now() "
            "FROM {s}.segments AS prev WHERE seg.id = :id AND prev.id = seg.id "
            "RETURNING seg.*, seg.version <> prev.version AS changed",
            {
                "id": segment_id,
                "name": name,
                "description": description,
                "conditions": _json(conditions),
                "refs": refs,
            },
        )
        row = result.one_or_none()
        return (_segment(row), bool(row.changed)) if row is not None else None

    async def get_segment(self, segment_id: str) -> SegmentRow | None:
        result = await self._execute(
            "SELECT * FROM {s}.segments WHERE id = :id", {"id": segment_id}
        )
        row = result.one_or_none()
        return _segment(row) if row is not None else None

    async def list_segments(self) -> list[SegmentRow]:
        result = await self._execute("SELECT * FROM {s}.segments ORDER BY id")
        return [_segment(row) for row in result]

    async def delete_segment(self, segment_id: str) -> tuple[int, list[str]] | None:
        """The deleted segment's last version and its members, or None when there was none."""
        result = await self._execute(
            "DELETE FROM {s}.segments WHERE id = :id RETURNING version", {"id": segment_id}
        )
        version = result.scalar_one_or_none()
        if version is None:
            return None
        await self._execute("DELETE FROM {s}.timers WHERE segment_id = :id", {"id": segment_id})
        members = await self._execute(
            "DELETE FROM {s}.memberships WHERE segment_id = :id RETURNING profile_id",
            {"id": segment_id},
        )
        return int(version), [row.profile_id for row in members]

    async def members(self, segment_id: str, after: str, limit: int) -> list[Member]:
        result = await self._execute(
            "SELECT profile_id, segment_version, entered_at FROM {s}.memberships "
            "WHERE segment_id = :id AND profile_id > :after ORDER BY profile_id LIMIT :limit",
            {"id": segment_id, "after": after, "limit": limit},
        )
        return [Member(row.profile_id, row.segment_version, row.entered_at) for row in result]

    async def count_matching(self, condition: Condition, now: datetime) -> int:
        compiler = SqlCompiler(self._schema, now)
        where = compiler.matches(condition)
        result = await self._execute(
            f"SELECT count(*) FROM {{s}}.profiles p WHERE {where}", compiler.params
        )
        return int(result.scalar_one())

    async def sample_matching(self, condition: Condition, now: datetime, limit: int) -> list[str]:
        """The first `limit` matching profile ids, in id order."""
        compiler = SqlCompiler(self._schema, now)
        where = compiler.matches(condition)
        result = await self._execute(
            f"SELECT p.profile_id FROM {{s}}.profiles p WHERE {where} "
            "ORDER BY p.profile_id LIMIT :sample_limit",
            {**compiler.params, "sample_limit": limit},
        )
        return [row.profile_id for row in result]

    async def matching_profiles(self, condition: Condition, now: datetime) -> set[str]:
        compiler = SqlCompiler(self._schema, now)
        where = compiler.matches(condition)
        result = await self._execute(
            f"SELECT p.profile_id FROM {{s}}.profiles p WHERE {where}", compiler.params
        )
        return {row.profile_id for row in result}

    async def evaluate_in_bulk(self, rule: SegmentRule, now: datetime) -> BulkChanges:
        """Make the memberships of a segment what its rules say now, in one statement."""
        compiler = SqlCompiler(self._schema, now)
        where = compiler.matches(rule.condition)
        params = {**compiler.params, "segment_id": rule.segment_id, "version": rule.version}
        result = await self._execute(
            "WITH matching AS MATERIALIZED "
            f"(SELECT p.profile_id FROM {{s}}.profiles p WHERE {where}), "
            "kept AS (UPDATE {s}.memberships m SET segment_version = :version "
            "FROM matching x WHERE m.segment_id = :segment_id AND m.profile_id = x.profile_id), "
            "entered AS (INSERT INTO {s}.memberships "
            "(segment_id, profile_id, segment_version, entered_at) "
            "SELECT :segment_id, x.profile_id, :version, :now FROM matching x "
            "WHERE NOT EXISTS (SELECT 1 FROM {s}.memberships m "
            "WHERE m.segment_id = :segment_id AND m.profile_id = x.profile_id) "
            "RETURNING profile_id), "
            "exited AS (DELETE FROM {s}.memberships m WHERE m.segment_id = :segment_id "
            "AND NOT EXISTS (SELECT 1 FROM matching x WHERE x.profile_id = m.profile_id) "
            "RETURNING m.profile_id) "
            "SELECT profile_id, true AS entered FROM entered "
            "UNION ALL SELECT profile_id, false FROM exited",
            {**params, "now": now},
        )
        changes = BulkChanges([], [])
        for row in result:
            (changes.entered if row.entered else changes.exited).append(row.profile_id)
        await self._schedule_in_bulk(rule, now)
        return changes

    async def _schedule_in_bulk(self, rule: SegmentRule, now: datetime) -> None:
        await self._execute(
            "DELETE FROM {s}.timers WHERE segment_id = :segment_id",
            {"segment_id": rule.segment_id},
        )
        compiler = SqlCompiler(self._schema, now)
        expiry = compiler.next_expiry(rule.condition)
        if expiry is None:
            return
        await self._execute(
            "INSERT INTO {s}.timers (segment_id, profile_id, due_at) "
            "SELECT :segment_id, profile_id, due_at FROM "
            f"(SELECT p.profile_id, {expiry} AS due_at FROM {{s}}.profiles p) AS t "
            "WHERE due_at IS NOT NULL",
            {**compiler.params, "segment_id": rule.segment_id},
        )


def _segment(row: Any) -> SegmentRow:
    return SegmentRow(
        row.id,
        row.name,
        row.description,
        row.version,
        row.conditions,
        row.created_at,
        row.updated_at,
    )


def behaviours_retained(schema: str, keep_days: float) -> Retained:
    """Behaviours kept `keep_days` after they happened."""
    return Retained(
        "behaviours",
        lambda session, limit: SegmentStore(session, schema).forget_behaviours(keep_days, limit),
    )

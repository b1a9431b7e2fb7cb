"""Reading, locking and writing a service's read-model copy: one SQL style for every copy."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.db import checked_schema
from libs.common.profiles.facts import ProfileFacts, StoredColumns
from libs.common.store import schema_statement

F = TypeVar("F", bound=ProfileFacts)

_COLUMNS = "profile_id, traits, tags, lifecycle_stage, scores, top_category"


class ProfileCopies(Generic[F]):
    """The copy in `schema`, over the caller's transaction. `make` builds the facts a service
    keeps (ProfileFacts, or a subclass that adds what the service loads beside them)."""

    def __init__(self, session: AsyncSession, schema: str, make: Callable[..., F]) -> None:
        self._session = session
        self._schema = checked_schema(schema)
        self._make = make
        # Each profile's columns as this transaction read them: a profile the batch left as it
        # was is not written again (most events change nothing the copy keeps).
        self._as_read: dict[str, StoredColumns] = {}

    async def _execute(self, sql: str, params: Mapping[str, Any]) -> Any:
        return await self._session.execute(schema_statement(sql, self._schema), params)

    async def lock(self, profile_ids: Collection[str]) -> dict[str, F]:
        """The profiles' facts (created empty when new), locked until the transaction ends."""
        ids = sorted(profile_ids)
        await self._execute(
            "INSERT INTO {s}.profiles (profile_id) SELECT unnest(CAST(:ids AS text[])) "
            "ON CONFLICT DO NOTHING",
            {"ids": ids},
        )
        return await self._select(ids, "FOR UPDATE")

    async def lock_if_free(self, profile_ids: Collection[str]) -> dict[str, F]:
        """The profiles no other transaction holds, locked; the others are left for later."""
        return await self._select(sorted(profile_ids), "FOR UPDATE SKIP LOCKED")

    async def _select(self, ids: list[str], locking: str) -> dict[str, F]:
        result = await self._execute(
            f"SELECT {_COLUMNS} FROM {{s}}.profiles "
            f"WHERE profile_id = ANY(CAST(:ids AS text[])) ORDER BY profile_id {locking}",
            {"ids": ids},
        )
        read = {
            row.profile_id: self._make(
                row.profile_id,
                row.traits,
                row.tags,
                row.lifecycle_stage,
                row.scores,
                row.top_category,
            )
            for row in result
        }
        self._as_read.update((profile_id, facts.columns()) for profile_id, facts in read.items())
        return read

    async def save(self, profiles: Iterable[ProfileFacts]) -> None:
        """Write the profiles' facts, except those still as this transaction read them."""
        rows = [
            {
                "profile_id": p.profile_id,
                "traits": p.traits,
                "tags": p.tags,
                "lifecycle_stage": p.lifecycle_stage,
                "scores": p.scores,
                "top_category": p.top_category,
            }
            for p in profiles
            if self._as_read.get(p.profile_id) != p.columns()
        ]
        if not rows:
            return
        await self._execute(
            f"INSERT INTO {{s}}.profiles ({_COLUMNS}) "
            "SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(profile_id text, "
            "traits jsonb, tags jsonb, lifecycle_stage text, scores jsonb, top_category text) "
            "ON CONFLICT (profile_id) DO UPDATE SET traits = excluded.traits, "
            "tags = excluded.tags, lifecycle_stage = excluded.lifecycle_stage, "
            "scores = excluded.scores, top_category = excluded.top_category",
            {"rows": _json(rows)},
        )
        self._as_read.update((str(row["profile_id"]), _columns_of(row)) for row in rows)

    async def delete(self, profile_ids: Sequence[str]) -> None:
        """Drop the copies of merged-away or erased profiles."""
        if profile_ids:
            await self._execute(
                "DELETE FROM {s}.profiles WHERE profile_id = ANY(CAST(:ids AS text[]))",
                {"ids": list(profile_ids)},
            )
            for profile_id in profile_ids:
                self._as_read.pop(profile_id, None)


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        # A trait or score may be an integer beyond 64 bits (events carry any JSON number),
        # which only json writes.
        return json.dumps(value)


def _columns_of(row: Mapping[str, Any]) -> StoredColumns:
    return (
        dict(row["traits"]),
        list(row["tags"]),
        row["lifecycle_stage"],
        dict(row["scores"]),
        row["top_category"],
    )

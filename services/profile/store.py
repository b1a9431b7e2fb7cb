"""The profile service's queries: a batch in one read and a few bulk writes, and the REST reads.

Statements go straight to asyncpg (as the bus's do): it binds arrays of hundreds of values
natively, and a batch's writes are one `unnest` statement per table.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.bus.driver import driver_connection
from libs.common.db import checked_schema
from libs.common.retention import Retained, batched_delete
from services.profile.identity import Identifier
from services.profile.predictions import BgNbdParams, GammaGammaParams
from services.profile.purchases import PurchaseDays
from services.profile.scoring import FittedModels, ScoreModel
from services.profile.state import ProfileState

# asyncpg's Connection is generic only in its stubs.
if TYPE_CHECKING:
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record]
else:
    Connection = asyncpg.Connection


@dataclass(frozen=True, slots=True)
class StoredProfile:
    id: str
    created_at: float
    state: ProfileState
    identifiers: tuple[Identifier, ...]


@dataclass(frozen=True, slots=True)
class LockedProfiles:
    """What a transaction may change, locked until it ends (see `ProfileStore.lock`).

    `profiles`: the living profiles owning any of the asked identifiers or named by id, each
    with every identifier it owns. `claimed`: asked identifiers nobody owned, held for this
    transaction until it links them (or lets them go). `current`: each named profile id ->
    the living profile it is now (itself, or its survivor); erased ones are absent.
    """

    profiles: list[StoredProfile]
    claimed: set[Identifier]
    current: dict[str, str]


@dataclass(frozen=True, slots=True)
class ReviewedProfile:
    """A profile due for review, and the moment its features were last announced for."""

    id: str
    state: ProfileState
    reviewed_at: float | None


@dataclass(frozen=True, slots=True)
class HistoryRow:
    profile_id: str
    message_id: str
    event: str
    kind: str
    occurred_at: datetime
    properties: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int
    message_id: str
    event: str
    kind: str
    occurred_at: datetime
    properties: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FitRecord:
    """One fit of the purchase models: when, over how many profiles, its models or why it
    failed, and how far the re-score of every profile with them got."""

    id: int
    fitted_at: float
    profiles: int
    repeat_buyers: int
    error: str | None
    model: ScoreModel | None
    rescored: int
    announced: int
    rescored_at: float | None


@dataclass(frozen=True, slots=True)
class Rescore:
    """A fit whose re-score is under way, locked by this transaction: the last profile done."""

    fit_id: int
    through: str


# The owner of an identifier claimed by a transaction that has not linked it yet; no other
# transaction ever sees it (the row is linked, or deleted, before the claim commits).
_CLAIMED = ""
# Profiles with at least one purchase (`purchases` is null in the state document of the others).
_HAS_PURCHASES = "jsonb_typeof(state -> 'purchases') = 'object'"
# Rounds of locking before a batch gives up and is retried (each round follows owners that
# changed during the last; more than two is already rare).
_LOCK_ROUNDS = 10


class ProfilesKeptMoving(Exception):
    """The profiles a batch needs kept changing owner while it locked them; retry the batch."""


class ProfileStore:
    """The queries over one schema's profile tables, on the caller's transaction."""

    def __init__(self, schema: str) -> None:
        self.schema = checked_schema(schema)
        self._forget_history = batched_delete(
            "profile_events", "t.occurred_at < now() - make_interval(secs => $1)", limit="$2"
        ).replace("{s}", self.schema)

    async def connection(self, session: AsyncSession) -> Connection:
        connection: Connection = await driver_connection(session)
        return connection

    async def lock(
        self,
        connection: Connection,
        identifiers: Collection[Identifier],
        profile_ids: Collection[str] = (),
    ) -> LockedProfiles:
        """Lock what a change to these identifiers' and profiles' people may touch.

        Every writer of a profile, or of an identifier owned by it, holds the profile's row
        (`FOR UPDATE`); an identifier nobody owns is claimed with a row of its own before it
        is linked. So replicas change different people at once, and never both create a
        profile for one new identifier. Owners may change between a read and its lock (a merge
        by another replica): then the new owners are locked in a next round, until nothing
        moved. Profiles are locked in id order within a round; a rare cycle across rounds is a
        deadlock PostgreSQL breaks by failing one transaction, which the consumer runs again.
        """
        locked: dict[str, StoredProfile] = {}
        owned: set[Identifier] = set()
        claimed: set[Identifier] = set()
        current = {profile_id: profile_id for profile_id in profile_ids}
        unowned, named = set(identifiers), set(current)
        for _ in range(_LOCK_ROUNDS):
            for profile in await self._lock_profiles(connection, unowned, named):
                locked[profile.id] = profile
                owned.update(profile.identifiers)
            unowned -= owned
            claimed |= await self._claim(connection, unowned)
            unowned -= claimed  # what is left was linked meanwhile: its owner, next round
            named = await self._follow_merges(connection, current, locked)
            if not unowned and not named:
                return LockedProfiles(list(locked.values()), claimed, current)
        raise ProfilesKeptMoving(f"owners still changing after {_LOCK_ROUNDS} rounds")

    async def _lock_profiles(
        self, connection: Connection, identifiers: Collection[Identifier], ids: Collection[str]
    ) -> list[StoredProfile]:
        """Lock the living profiles owning `identifiers` or named in `ids`, in id order."""
        if not identifiers and not ids:
            return []
        # The identifiers are read in the same statement, with its snapshot: an owner that
        # gained some while this waited for its lock does not show them yet, and a batch
        # identifier among them then fails its claim and is locked again next round, fresh.
        rows = await connection.fetch(
            f"WITH wanted AS (SELECT i.profile_id AS id "
            f"FROM unnest($1::text[], $2::text[]) AS w(kind, value) "
            f"JOIN {self.schema}.identities i USING (kind, value) "
            "UNION SELECT unnest($3::text[])), "
            f"locked AS (SELECT p.id, p.created_at, p.state FROM {self.schema}.profiles p "
            "JOIN wanted USING (id) ORDER BY p.id FOR UPDATE OF p) "
            "SELECT l.id, l.created_at, l.state::text AS state, "
            "coalesce(owned.kinds, '{}') AS kinds, coalesce(owned.ids, '{}') AS ids "
            "FROM locked l LEFT JOIN LATERAL (SELECT array_agg(i.kind) AS kinds, "
            f"array_agg(i.value) AS ids FROM {self.schema}.identities i "
            "WHERE i.profile_id = l.id) owned ON true",
            [identifier.kind for identifier in identifiers],
            [identifier.value for identifier in identifiers],
            list(ids),
        )
        return [_stored(row) for row in rows]

    async def _claim(
        self, connection: Connection, identifiers: Collection[Identifier]
    ) -> set[Identifier]:
        """Hold the identifiers nobody owns: those whose row this inserted. The others were
        linked meanwhile (by a transaction this may have waited for): their owners are new."""
        if not identifiers:
            return set()
        rows = await connection.fetch(
            f"INSERT INTO {self.schema}.identities (kind, value, profile_id) "
            f"SELECT kind, value, '{_CLAIMED}' "
            "FROM unnest($1::text[], $2::text[]) AS c(kind, value) "
            "ON CONFLICT (kind, value) DO NOTHING RETURNING kind, value",
            [identifier.kind for identifier in identifiers],
            [identifier.value for identifier in identifiers],
        )
        return {Identifier(row["kind"], row["value"]) for row in rows}

    async def _follow_merges(
        self, connection: Connection, current: dict[str, str], locked: Mapping[str, StoredProfile]
    ) -> set[str]:
        """Move each named profile that is not locked (it was merged or erased) to its survivor;
        forget the erased. The survivors to lock next."""
        gone = {named: now for named, now in current.items() if now not in locked}
        if not gone:
            return set()
        rows = await connection.fetch(
            f"SELECT id, survivor_id FROM {self.schema}.merged_profiles WHERE id = ANY($1)",
            list(set(gone.values())),
        )
        survivors: dict[str, str] = {row["id"]: row["survivor_id"] for row in rows}
        for named, now in gone.items():
            survivor = survivors.get(now)
            if survivor is None:
                del current[named]  # erased
            else:
                current[named] = survivor
        return {survivor for named, survivor in current.items() if survivor not in locked}

    async def release_claims(self, connection: Connection, claims: Collection[Identifier]) -> None:
        """Delete the rows of claimed identifiers that were not linked after all."""
        if not claims:
            return
        await connection.execute(
            f"DELETE FROM {self.schema}.identities i USING unnest($1::text[], $2::text[]) "
            f"AS c(kind, value) WHERE i.kind = c.kind AND i.value = c.value "
            f"AND i.profile_id = '{_CLAIMED}'",
            [identifier.kind for identifier in claims],
            [identifier.value for identifier in claims],
        )

    async def record_merges(self, connection: Connection, merges: Mapping[str, str]) -> None:
        """Move everything of merged profiles to their survivors and leave a redirect behind."""
        if not merges:
            return
        merged, survivors = list(merges), list(merges.values())
        pairs = "unnest($1::text[], $2::text[]) AS m(merged, survivor)"
        for table in ("identities", "profile_events"):
            await connection.execute(
                f"UPDATE {self.schema}.{table} t SET profile_id = m.survivor FROM {pairs} "
                "WHERE t.profile_id = m.merged",
                merged,
                survivors,
            )
        await connection.execute(
            f"UPDATE {self.schema}.merged_profiles r SET survivor_id = m.survivor FROM {pairs} "
            "WHERE r.survivor_id = m.merged",
            merged,
            survivors,
        )
        await connection.execute(
            f"INSERT INTO {self.schema}.merged_profiles (id, survivor_id) SELECT * FROM {pairs} "
            "ON CONFLICT (id) DO UPDATE SET survivor_id = excluded.survivor_id",
            merged,
            survivors,
        )
        await connection.execute(f"DELETE FROM {self.schema}.profiles WHERE id = ANY($1)", merged)

    async def link(self, connection: Connection, links: Mapping[Identifier, str]) -> None:
        if not links:
            return
        await connection.execute(
            f"INSERT INTO {self.schema}.identities (kind, value, profile_id) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) "
            "ON CONFLICT (kind, value) DO UPDATE SET profile_id = excluded.profile_id",
            [identifier.kind for identifier in links],
            [identifier.value for identifier in links],
            list(links.values()),
        )

    async def save_profiles(
        self,
        connection: Connection,
        profiles: Mapping[str, tuple[float, ProfileState, float | None]],
        reviewed_at: float,
    ) -> None:
        """Insert or replace profiles: id -> (created at, state, next review), as they stand at
        `reviewed_at` (what `profile.updated` just told downstream)."""
        if not profiles:
            return
        await connection.execute(
            f"INSERT INTO {self.schema}.profiles "
            "(id, created_at, state, reviewed_at, review_due_at) "
            "SELECT id, to_timestamp(created), state::jsonb, to_timestamp($5), to_timestamp(due) "
            "FROM unnest($1::text[], $2::float8[], $3::text[], $4::float8[]) "
            "AS p(id, created, state, due) "
            "ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = now(), "
            "reviewed_at = excluded.reviewed_at, review_due_at = excluded.review_due_at",
            list(profiles),
            [created for created, _, _ in profiles.values()],
            [orjson.dumps(state.to_json()).decode() for _, state, _ in profiles.values()],
            [due for _, _, due in profiles.values()],
            reviewed_at,
        )

    async def record_memberships(
        self, connection: Connection, memberships: Mapping[tuple[str, str], int | None]
    ) -> None:
        """Record segment memberships in the profiles' states, in one statement that reads no
        state into Python: (profile id, segment id) -> the version it is in, None when it left.
        A merged profile's go to its survivor; an erased profile's are dropped."""
        if not memberships:
            return
        await connection.execute(
            "WITH named AS (SELECT coalesce(r.survivor_id, c.profile_id) AS id, c.segment_id, "
            "c.version FROM unnest($1::text[], $2::text[], $3::int[]) "
            "AS c(profile_id, segment_id, version) "
            f"LEFT JOIN {self.schema}.merged_profiles r ON r.id = c.profile_id), "
            "changed AS (SELECT id, "
            "coalesce(jsonb_object_agg(segment_id, version) FILTER (WHERE version IS NOT NULL), "
            "'{}') AS entered, "
            "coalesce(array_agg(segment_id) FILTER (WHERE version IS NULL), '{}') AS exited "
            "FROM named GROUP BY id), "
            f"locked AS (SELECT p.id FROM {self.schema}.profiles p JOIN changed USING (id) "
            "ORDER BY p.id FOR UPDATE OF p) "
            f"UPDATE {self.schema}.profiles p SET state = jsonb_set(p.state, '{{segments}}', "
            "(coalesce(p.state -> 'segments', '{}') - c.exited) || c.entered), "
            "updated_at = now() FROM changed c JOIN locked USING (id) WHERE p.id = c.id",
            [profile_id for profile_id, _ in memberships],
            [segment_id for _, segment_id in memberships],
            list(memberships.values()),
        )

    async def claim_due_reviews(
        self, connection: Connection, as_of: float, limit: int
    ) -> list[ReviewedProfile]:
        """Profiles whose features may have aged by `as_of`, locked for this transaction."""
        rows = await connection.fetch(
            f"SELECT id, state::text AS state, reviewed_at FROM {self.schema}.profiles "
            "WHERE review_due_at <= to_timestamp($1) ORDER BY review_due_at LIMIT $2 "
            "FOR UPDATE SKIP LOCKED",
            as_of,
            limit,
        )
        return [_reviewed(row) for row in rows]

    async def mark_reviewed(
        self, connection: Connection, due: Mapping[str, float | None], reviewed_at: float
    ) -> None:
        """Record a review: id -> the next one (None: never again, until an event comes)."""
        if not due:
            return
        await connection.execute(
            f"UPDATE {self.schema}.profiles p SET reviewed_at = to_timestamp($3), "
            "review_due_at = to_timestamp(r.due) "
            "FROM unnest($1::text[], $2::float8[]) AS r(id, due) WHERE p.id = r.id",
            list(due),
            list(due.values()),
            reviewed_at,
        )

    async def save_rescored(
        self,
        connection: Connection,
        profiles: Mapping[str, tuple[ProfileState, float | None]],
        reviewed_at: float,
    ) -> None:
        """Store re-scored profiles: id -> (state, next review), announced as of `reviewed_at`."""
        if not profiles:
            return
        await connection.execute(
            f"UPDATE {self.schema}.profiles p SET state = r.state::jsonb, updated_at = now(), "
            "reviewed_at = to_timestamp($4), review_due_at = to_timestamp(r.due) "
            "FROM unnest($1::text[], $2::text[], $3::float8[]) AS r(id, state, due) "
            "WHERE p.id = r.id",
            list(profiles),
            [orjson.dumps(state.to_json()).decode() for state, _ in profiles.values()],
            [due for _, due in profiles.values()],
            reviewed_at,
        )

    async def purchase_day_documents(self, connection: Connection) -> list[tuple[str, str]]:
        """Every profile's purchase days as stored, (id, JSON), for a fit or a backtest, which
        read them with `parse_purchase_days` off the event loop (a second per 100,000)."""
        rows = await connection.fetch(
            f"SELECT id, (state -> 'purchases')::text AS purchases FROM {self.schema}.profiles "
            f"WHERE {_HAS_PURCHASES}"
        )
        return [(row["id"], row["purchases"]) for row in rows]

    async def lock_fitting(self, connection: Connection, *, wait: bool) -> bool:
        """Take the lock one fit at a time holds until its transaction ends (replicas fit in
        turn); without `wait`, False when another transaction holds it."""
        key = f"{self.schema}.prediction_fits"
        if wait:
            await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))", key)
            return True
        got: bool = await connection.fetchval("SELECT pg_try_advisory_xact_lock(hashtext($1))", key)
        return got

    async def record_fit(
        self, connection: Connection, fitted_at: float, fitted: FittedModels
    ) -> FitRecord:
        purchases, value = fitted.purchases, fitted.value
        rows = await connection.fetch(
            f"INSERT INTO {self.schema}.prediction_fits (fitted_at, profiles, repeat_buyers, "
            "r, alpha, a, b, p, q, v, value_fallback_mean) "
            "VALUES (to_timestamp($1), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING *",
            fitted_at,
            fitted.profiles,
            fitted.repeat_buyers,
            purchases.r,
            purchases.alpha,
            purchases.a,
            purchases.b,
            *((None, None, None) if value.fallback else (value.p, value.q, value.v)),
            value.fallback_mean,
        )
        return _fit_record(rows[0])

    async def record_failed_fit(
        self,
        connection: Connection,
        fitted_at: float,
        profiles: int,
        repeat_buyers: int,
        error: str,
    ) -> FitRecord:
        rows = await connection.fetch(
            f"INSERT INTO {self.schema}.prediction_fits (fitted_at, profiles, repeat_buyers, "
            "error) VALUES (to_timestamp($1), $2, $3, $4) RETURNING *",
            fitted_at,
            profiles,
            repeat_buyers,
            error,
        )
        return _fit_record(rows[0])

    async def last_fit(
        self, connection: Connection, *, succeeded: bool = False
    ) -> FitRecord | None:
        """The latest fit (`succeeded`: the latest that fitted)."""
        row = await connection.fetchrow(
            f"SELECT * FROM {self.schema}.prediction_fits "
            f"{'WHERE error IS NULL ' if succeeded else ''}ORDER BY id DESC LIMIT 1"
        )
        return None if row is None else _fit_record(row)

    async def fit(self, connection: Connection, fit_id: int) -> FitRecord | None:
        row = await connection.fetchrow(
            f"SELECT * FROM {self.schema}.prediction_fits WHERE id = $1", fit_id
        )
        return None if row is None else _fit_record(row)

    async def score_model(self, connection: Connection) -> ScoreModel | None:
        """The models of the latest fit that fitted, which scores are computed with."""
        record = await self.last_fit(connection, succeeded=True)
        return None if record is None else record.model

    async def claim_rescore(self, connection: Connection, *, wait: bool) -> Rescore | None:
        """Lock the latest fit's re-score if it is unfinished; without `wait`, skip it while
        another transaction (a replica) holds it."""
        row = await connection.fetchrow(
            f"SELECT id, coalesce(rescored_through, '') AS through "
            f"FROM {self.schema}.prediction_fits WHERE id = (SELECT max(id) "
            f"FROM {self.schema}.prediction_fits WHERE error IS NULL) AND rescored_at IS NULL "
            f"FOR UPDATE{'' if wait else ' SKIP LOCKED'}"
        )
        return None if row is None else Rescore(row["id"], row["through"])

    async def profiles_to_rescore(
        self, connection: Connection, after: str, limit: int
    ) -> list[ReviewedProfile]:
        """The next profiles with purchases after id `after`, in id order, locked."""
        rows = await connection.fetch(
            f"SELECT id, state::text AS state, reviewed_at FROM {self.schema}.profiles "
            f"WHERE id > $1 AND {_HAS_PURCHASES} ORDER BY id LIMIT $2 FOR UPDATE",
            after,
            limit,
        )
        return [_reviewed(row) for row in rows]

    async def advance_rescore(
        self,
        connection: Connection,
        rescore: Rescore,
        through: str,
        scored: int,
        announced: int,
        finished_at: float | None,
    ) -> None:
        await connection.execute(
            f"UPDATE {self.schema}.prediction_fits SET rescored_through = $2, "
            "rescored = rescored + $3, announced = announced + $4, "
            "rescored_at = to_timestamp($5) WHERE id = $1",
            rescore.fit_id,
            through,
            scored,
            announced,
            finished_at,
        )

    async def add_history(self, connection: Connection, rows: Sequence[HistoryRow]) -> None:
        if not rows:
            return
        await connection.execute(
            f"INSERT INTO {self.schema}.profile_events "
            "(profile_id, message_id, event, kind, occurred_at, properties) "
            "SELECT p, m, e, k, o, props::jsonb FROM unnest($1::text[], $2::text[], $3::text[], "
            "$4::text[], $5::timestamptz[], $6::text[]) AS h(p, m, e, k, o, props)",
            [row.profile_id for row in rows],
            [row.message_id for row in rows],
            [row.event for row in rows],
            [row.kind for row in rows],
            [row.occurred_at for row in rows],
            [orjson.dumps(row.properties).decode() for row in rows],
        )

    async def forget_history(self, connection: Connection, keep_days: float, limit: int) -> int:
        """Events of any profile that happened more than `keep_days` ago, at most `limit`."""
        status = await connection.execute(self._forget_history, keep_days * 86_400, limit)
        return int(status.split()[-1])

    async def trim_history(self, connection: Connection, profile_ids: list[str], keep: int) -> None:
        """Keep only the newest `keep` events of each of these profiles."""
        if not profile_ids:
            return
        await connection.execute(
            f"DELETE FROM {self.schema}.profile_events e USING ("
            "SELECT seq FROM (SELECT seq, row_number() OVER "
            "(PARTITION BY profile_id ORDER BY seq DESC) AS rank "
            f"FROM {self.schema}.profile_events WHERE profile_id = ANY($1)) ranked "
            "WHERE rank > $2) old WHERE e.seq = old.seq",
            profile_ids,
            keep,
        )

    async def profile(self, connection: Connection, profile_id: str) -> StoredProfile | None:
        row = await connection.fetchrow(
            f"SELECT p.id, p.created_at, p.state::text AS state, "
            f"coalesce(array_agg(i.kind) FILTER (WHERE i.kind IS NOT NULL), '{{}}') AS kinds, "
            f"coalesce(array_agg(i.value) FILTER (WHERE i.kind IS NOT NULL), '{{}}') AS ids "
            f"FROM {self.schema}.profiles p "
            f"LEFT JOIN {self.schema}.identities i ON i.profile_id = p.id "
            "WHERE p.id = $1 GROUP BY p.id",
            profile_id,
        )
        return None if row is None else _stored(row)

    async def profiles_page(
        self,
        connection: Connection,
        *,
        after: str | None,
        limit: int,
        traits: Sequence[tuple[str, str]] = (),
        profile_id: str | None = None,
    ) -> list[StoredProfile]:
        """Profiles in id order after the cursor `after`, each trait equal to its value as text
        (`42` matches the number and the string), only `profile_id` when given."""
        arguments: list[object] = [after or "", limit]
        conditions = ["id > $1"]
        if profile_id is not None:
            arguments.append(profile_id)
            conditions.append(f"id = ${len(arguments)}")
        for name, value in traits:
            arguments += [name, value]
            conditions.append(f"state->'traits'->>${len(arguments) - 1} = ${len(arguments)}")
        rows = await connection.fetch(
            "SELECT p.id, p.created_at, p.state::text AS state, "
            "coalesce(array_agg(i.kind) FILTER (WHERE i.kind IS NOT NULL), '{}') AS kinds, "
            "coalesce(array_agg(i.value) FILTER (WHERE i.kind IS NOT NULL), '{}') AS ids "
            f"FROM (SELECT id, created_at, state FROM {self.schema}.profiles "
            f"WHERE {' AND '.join(conditions)} ORDER BY id LIMIT $2) p "
            f"LEFT JOIN {self.schema}.identities i ON i.profile_id = p.id "
            "GROUP BY p.id, p.created_at, p.state::text ORDER BY p.id",
            *arguments,
        )
        return [_stored(row) for row in rows]

    async def survivor_of(self, connection: Connection, merged_id: str) -> str | None:
        survivor: str | None = await connection.fetchval(
            f"SELECT survivor_id FROM {self.schema}.merged_profiles WHERE id = $1", merged_id
        )
        return survivor

    async def owner_of(self, connection: Connection, identifier: Identifier) -> str | None:
        owner: str | None = await connection.fetchval(
            f"SELECT profile_id FROM {self.schema}.identities WHERE kind = $1 AND value = $2",
            identifier.kind,
            identifier.value,
        )
        return owner

    async def recent_events(
        self, connection: Connection, profile_id: str, limit: int, before: int | None
    ) -> list[StoredEvent]:
        """The profile's events, newest first, older than the cursor `before` when given."""
        rows = await connection.fetch(
            f"SELECT seq, message_id, event, kind, occurred_at, properties::text AS properties "
            f"FROM {self.schema}.profile_events WHERE profile_id = $1 AND seq < $2 "
            "ORDER BY seq DESC LIMIT $3",
            profile_id,
            before if before is not None else 2**63 - 1,
            limit,
        )
        return [
            StoredEvent(
                seq=row["seq"],
                message_id=row["message_id"],
                event=row["event"],
                kind=row["kind"],
                occurred_at=row["occurred_at"],
                properties=orjson.loads(row["properties"]),
            )
            for row in rows
        ]

    async def erase(self, connection: Connection, profile_id: str) -> bool:
        """Delete the person: profile, identities, event history and redirects to them."""
        deleted = await connection.fetchval(
            f"WITH gone AS (DELETE FROM {self.schema}.profiles WHERE id = $1 RETURNING id), "
            f"ids AS (DELETE FROM {self.schema}.identities WHERE profile_id = $1), "
            f"history AS (DELETE FROM {self.schema}.profile_events WHERE profile_id = $1), "
            f"redirects AS (DELETE FROM {self.schema}.merged_profiles WHERE survivor_id = $1) "
            "SELECT count(*) FROM gone",
            profile_id,
        )
        return bool(deleted)


def parse_purchase_days(documents: Sequence[tuple[str, str]]) -> dict[str, PurchaseDays]:
    """Profile id -> purchase days, from `ProfileStore.purchase_day_documents`."""
    return {pid: PurchaseDays.from_json(orjson.loads(document)) for pid, document in documents}


def _reviewed(row: asyncpg.Record) -> ReviewedProfile:
    return ReviewedProfile(
        id=row["id"],
        state=ProfileState.from_json(orjson.loads(row["state"])),
        reviewed_at=None if row["reviewed_at"] is None else row["reviewed_at"].timestamp(),
    )


def _fit_record(row: asyncpg.Record) -> FitRecord:
    fitted_at = row["fitted_at"].timestamp()
    model = None
    if row["error"] is None:
        fallback = row["value_fallback_mean"]
        value = (
            GammaGammaParams(math.nan, math.nan, math.nan, fallback_mean=fallback)
            if fallback is not None
            else GammaGammaParams(row["p"], row["q"], row["v"])
        )
        purchases = BgNbdParams(row["r"], row["alpha"], row["a"], row["b"])
        fitted = FittedModels(purchases, value, row["profiles"], row["repeat_buyers"])
        model = ScoreModel(row["id"], fitted_at, fitted)
    return FitRecord(
        id=row["id"],
        fitted_at=fitted_at,
        profiles=row["profiles"],
        repeat_buyers=row["repeat_buyers"],
        error=row["error"],
        model=model,
        rescored=row["rescored"],
        announced=row["announced"],
        rescored_at=None if row["rescored_at"] is None else row["rescored_at"].timestamp(),
    )


def _stored(row: asyncpg.Record) -> StoredProfile:
    created_at: datetime = row["created_at"]
    return StoredProfile(
        id=row["id"],
        created_at=created_at.astimezone(UTC).timestamp(),
        state=ProfileState.from_json(orjson.loads(row["state"])),
        identifiers=tuple(
            Identifier(kind, value) for kind, value in zip(row["kinds"], row["ids"], strict=True)
        ),
    )


def history_retained(schema: str, keep_days: float) -> Retained:
    """Events of profiles' histories kept `keep_days` after they happened."""
    store = ProfileStore(schema)

    async def forget(session: AsyncSession, limit: int) -> int:
        return await store.forget_history(await store.connection(session), keep_days, limit)

    return Retained("profile events", forget)

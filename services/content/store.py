"""The content service's queries; nothing else touches its tables.

`ContentStore` serves the API over SQLAlchemy; `BatchStore` serves the event handler, a batch at
a time, straight to asyncpg.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.bus.driver import driver_connection
from libs.common.db import checked_schema
from libs.common.retention import Retained, batched_delete, older_than
from libs.common.store import SchemaStore
from services.content.experiments import EvidenceRow, Experiment, Insight, Reward
from services.content.templates import TemplateVersion


@dataclass(frozen=True)
class TemplateRow:
    """A template with its current version's content."""

    id: str
    name: str
    channel: str
    version: int
    defaults: dict[str, Any]
    variants: list[dict[str, Any]]
    reward: str
    holdout_share: float
    created_at: datetime
    updated_at: datetime
    topic: str | None = None
    transactional: bool = False

    def current(self) -> TemplateVersion:
        return TemplateVersion(
            self.id,
            self.version,
            self.channel,
            self.defaults,
            self.variants,
            self.reward,
            self.holdout_share,
            self.topic,
            self.transactional,
        )


@dataclass(frozen=True)
class TemplateContent:
    """What a new version of a template says."""

    name: str
    channel: str
    defaults: dict[str, Any]
    variants: list[dict[str, Any]]
    reward: str
    holdout_share: float
    topic: str | None = None
    transactional: bool = False


@dataclass(frozen=True)
class StoredInsight:
    """An insight as kept: its id and when it was written."""

    id: int
    insight: Insight
    created_at: datetime


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


_TEMPLATE_COLUMNS = (
    "t.id, t.name, t.channel, t.version, t.created_at, t.updated_at, "
    "v.defaults, v.variants, v.reward, v.holdout_share, v.topic, v.transactional"
)


_FORGET_DECISIONS = batched_delete("decisions", older_than("decided_at"))
_FORGET_REWARDS = batched_delete("rewards", older_than("counted_at"))


class ContentStore(SchemaStore):
    """Content's queries (SchemaStore: the caller's transaction, the service's schema)."""

    async def forget_decisions(self, keep_days: float, limit: int) -> int:
        """Decisions, then counted rewards, older than `keep_days`: at most `limit` in all."""
        params = {"seconds": keep_days * 86_400, "limit": limit}
        decisions = int((await self._execute(_FORGET_DECISIONS, params)).rowcount or 0)
        if decisions == limit:
            return decisions
        params["limit"] = limit - decisions
        rewards = await self._execute(_FORGET_REWARDS, params)
        return decisions + int(rewards.rowcount or 0)

    # Templates.

    async def insert_template(
        self, template_id: str, content: TemplateContent
    ) -> TemplateRow | None:
        """The new template at version 1, or None when the id is taken."""
        result = await self._execute(
            "INSERT INTO {s}.templates (id, name, channel, version) "
            "VALUES (:id, :name, :channel, 1) ON CONFLICT (id) DO NOTHING RETURNING id",
            {"id": template_id, "name": content.name, "channel": content.channel},
        )
        if result.scalar_one_or_none() is None:
            return None
        await self._insert_version(template_id, 1, content)
        return await self.get_template(template_id)

    async def add_version(self, template_id: str, content: TemplateContent) -> TemplateRow | None:
        """The template at its new version, or None when there is no such template."""
        result = await self._execute(
            "UPDATE {s}.templates SET name = :name, channel = :channel, version = version + 1, "
            "updated_at = now() WHERE id = :id RETURNING version",
            {"id": template_id, "name": content.name, "channel": content.channel},
        )
        version = result.scalar_one_or_none()
        if version is None:
            return None
        await self._insert_version(template_id, int(version), content)
        return await self.get_template(template_id)

    async def _insert_version(
        self, template_id: str, version: int, content: TemplateContent
    ) -> None:
        await self._execute(
            "INSERT INTO {s}.template_versions "
            "(template_id, version, defaults, variants, reward, holdout_share, topic, "
            "transactional) VALUES (:id, :version, CAST(:defaults AS jsonb), "
            "CAST(:variants AS jsonb), :reward, :holdout_share, :topic, :transactional)",
            {
                "id": template_id,
                "version": version,
                "defaults": _json(content.defaults),
                "variants": _json(content.variants),
                "reward": content.reward,
                "holdout_share": content.holdout_share,
                "topic": content.topic,
                "transactional": content.transactional,
            },
        )

    async def get_template(self, template_id: str) -> TemplateRow | None:
        result = await self._execute(
            f"SELECT {_TEMPLATE_COLUMNS} FROM {{s}}.templates t JOIN {{s}}.template_versions v "
            "ON v.template_id = t.id AND v.version = t.version WHERE t.id = :id",
            {"id": template_id},
        )
        row = result.one_or_none()
        return _template(row) if row is not None else None

    async def list_templates(self) -> list[TemplateRow]:
        result = await self._execute(
            f"SELECT {_TEMPLATE_COLUMNS} FROM {{s}}.templates t JOIN {{s}}.template_versions v "
            "ON v.template_id = t.id AND v.version = t.version ORDER BY t.id"
        )
        return [_template(row) for row in result]

    async def delete_template(self, template_id: str) -> bool:
        result = await self._execute(
            "DELETE FROM {s}.templates WHERE id = :id RETURNING id", {"id": template_id}
        )
        deleted = result.scalar_one_or_none() is not None
        if deleted:  # its experiment goes with it (a foreign key); its insights stay, as history
            await self._execute(
                "DELETE FROM {s}.variant_evidence WHERE template_id = :id", {"id": template_id}
            )
        return deleted

    # The variant experiment.

    async def evidence(self, template_ids: Collection[str]) -> dict[str, list[EvidenceRow]]:
        """The stored evidence of each of these templates (none yet: no entry)."""
        result = await self._execute(
            "SELECT template_id, context_key, variant_id, trials, clicks, conversions, updated_at "
            "FROM {s}.variant_evidence WHERE template_id = ANY(CAST(:ids AS text[]))",
            {"ids": list(template_ids)},
        )
        found: dict[str, list[EvidenceRow]] = {}
        for row in result:
            found.setdefault(row.template_id, []).append(_evidence_row(row._mapping))
        return found

    async def experiment(self, template_id: str) -> Experiment | None:
        result = await self._execute(
            f"SELECT {_EXPERIMENT_COLUMNS} FROM {{s}}.experiments WHERE template_id = :id",
            {"id": template_id},
        )
        row = result.one_or_none()
        return _experiment(row._mapping) if row is not None else None

    async def lock_template(self, template_id: str) -> TemplateRow | None:
        """The template, locked until the transaction ends: one evaluation of it at a time."""
        result = await self._execute(
            f"SELECT {_TEMPLATE_COLUMNS} FROM {{s}}.templates t JOIN {{s}}.template_versions v "
            "ON v.template_id = t.id AND v.version = t.version WHERE t.id = :id FOR UPDATE OF t",
            {"id": template_id},
        )
        row = result.one_or_none()
        return _template(row) if row is not None else None

    async def claim_due_evaluations(self, before: datetime, limit: int) -> list[TemplateRow]:
        """Templates with variants not evaluated since `before`, least recently evaluated first,
        locked (replicas skip each other's)."""
        result = await self._execute(
            f"SELECT {_TEMPLATE_COLUMNS} FROM {{s}}.templates t JOIN {{s}}.template_versions v "
            "ON v.template_id = t.id AND v.version = t.version "
            "LEFT JOIN {s}.experiments e ON e.template_id = t.id "
            "WHERE jsonb_array_length(v.variants) > 1 "
            "AND (e.evaluated_at IS NULL OR e.evaluated_at < :before) "
            "ORDER BY e.evaluated_at NULLS FIRST, t.id LIMIT :limit FOR UPDATE OF t SKIP LOCKED",
            {"before": before, "limit": limit},
        )
        return [_template(row) for row in result]

    async def save_experiment(self, experiment: Experiment) -> None:
        await self._execute(
            "INSERT INTO {s}.experiments (template_id, variants, promoted_at, value_remaining, "
            "probability_optimal, probability_best, leaders, evaluated_at) VALUES (:id, "
            "CAST(:variants AS jsonb), :promoted_at, :value_remaining, :probability_optimal, "
            "CAST(:probability_best AS jsonb), CAST(:leaders AS jsonb), :evaluated_at) "
            "ON CONFLICT (template_id) DO UPDATE SET variants = excluded.variants, "
            "promoted_at = excluded.promoted_at, value_remaining = excluded.value_remaining, "
            "probability_optimal = excluded.probability_optimal, "
            "probability_best = excluded.probability_best, leaders = excluded.leaders, "
            "evaluated_at = excluded.evaluated_at",
            {
                "id": experiment.template_id,
                "variants": _json(list(experiment.variants)),
                "promoted_at": experiment.promoted_at,
                "value_remaining": experiment.value_remaining,
                "probability_optimal": experiment.probability_optimal,
                "probability_best": _json(experiment.probability_best),
                "leaders": _json(experiment.leaders),
                "evaluated_at": experiment.evaluated_at,
            },
        )

    async def add_insight(self, insight: Insight) -> StoredInsight:
        result = await self._execute(
            "INSERT INTO {s}.insights (template_id, kind, message, evidence) VALUES "
            "(:template_id, :kind, :message, CAST(:evidence AS jsonb)) RETURNING id, created_at",
            {
                "template_id": insight.template_id,
                "kind": insight.kind,
                "message": insight.message,
                "evidence": _json(insight.evidence),
            },
        )
        row = result.one()
        return StoredInsight(int(row.id), insight, row.created_at)

    async def insights(self, template_id: str | None, limit: int) -> list[StoredInsight]:
        """The latest insights, newest first: of one template, or of all."""
        result = await self._execute(
            "SELECT id, template_id, kind, message, evidence, created_at FROM {s}.insights "
            "WHERE CAST(:template_id AS text) IS NULL OR template_id = :template_id "
            "ORDER BY id DESC LIMIT :limit",
            {"template_id": template_id, "limit": limit},
        )
        return [
            StoredInsight(
                int(row.id),
                Insight(row.template_id, row.kind, row.message, row.evidence),
                row.created_at,
            )
            for row in result
        ]

    # Decisions.

    async def outcome_counts(self, template_id: str) -> dict[str, int]:
        result = await self._execute(
            "SELECT outcome, count(*) AS n FROM {s}.decisions WHERE template_id = :id "
            "GROUP BY outcome",
            {"id": template_id},
        )
        return {row.outcome: int(row.n) for row in result}


_EXPERIMENT_COLUMNS = (
    "template_id, variants::text AS variants, promoted_at, value_remaining, "
    "probability_optimal, probability_best::text AS probability_best, leaders::text AS leaders, "
    "evaluated_at"
)


def _experiment(row: Any) -> Experiment:
    return Experiment(
        row["template_id"],
        tuple(orjson.loads(row["variants"])),
        row["promoted_at"],
        float(row["value_remaining"]),
        float(row["probability_optimal"]),
        orjson.loads(row["probability_best"]),
        orjson.loads(row["leaders"]),
        row["evaluated_at"],
    )


def _evidence_row(row: Any) -> EvidenceRow:
    return EvidenceRow(
        row["context_key"],
        row["variant_id"],
        float(row["trials"]),
        float(row["clicks"]),
        float(row["conversions"]),
        row["updated_at"],
    )


def _template(row: Any) -> TemplateRow:
    return TemplateRow(
        row.id,
        row.name,
        row.channel,
        row.version,
        row.defaults,
        row.variants,
        row.reward,
        float(row.holdout_share),
        row.created_at,
        row.updated_at,
        row.topic,
        row.transactional,
    )


# asyncpg's Connection is generic only in its stubs.
if TYPE_CHECKING:
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record]
else:
    Connection = asyncpg.Connection


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """What content decided for a request; a rendered one logs the context its variant was
    chosen in and the probability it had (for offline evaluation)."""

    idempotency_key: str
    request_id: str
    profile_id: str
    template_id: str
    template_version: int
    variant_id: str | None
    outcome: str
    context_key: str | None = None
    propensity: float | None = None


class BatchStore:
    """The handler's queries: a batch's state in a few reads, its changes in a few bulk writes.

    They go straight to asyncpg on the session's transaction (as the bus's do): it binds arrays
    of hundreds of values natively, where SQLAlchemy would process them value by value.
    """

    def __init__(self, schema: str) -> None:
        s = checked_schema(schema)
        self._erase_decisions = f"DELETE FROM {s}.decisions WHERE profile_id = ANY($1::text[])"
        self._move_decisions = (
            f"UPDATE {s}.decisions d SET profile_id = m.survivor "
            "FROM unnest($1::text[], $2::text[]) AS m(merged, survivor) "
            "WHERE d.profile_id = m.merged"
        )
        self._claim_rewards = (
            f"INSERT INTO {s}.rewards (message_id, kind, context_key) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING "
            "RETURNING message_id, kind"
        )
        # Stored counts are discounted to their row's `updated_at`: a new count first discounts
        # the row to now (half-life $8 seconds), then adds to it.
        decay = "power(0.5, greatest(extract(epoch FROM $7 - e.updated_at), 0) / $8::float8)"
        self._add_evidence = (
            f"INSERT INTO {s}.variant_evidence AS e (template_id, context_key, variant_id, "
            "trials, clicks, conversions, updated_at) SELECT t, c, v, n, k, x, $7::timestamptz "
            "FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::float8[], "
            "$6::float8[]) "
            "AS r(t, c, v, n, k, x) "
            "ON CONFLICT (template_id, context_key, variant_id) DO UPDATE SET "
            f"trials = e.trials * {decay} + excluded.trials, "
            f"clicks = e.clicks * {decay} + excluded.clicks, "
            f"conversions = e.conversions * {decay} + excluded.conversions, "
            "updated_at = greatest(e.updated_at, excluded.updated_at)"
        )
        self._evidence = (
            "SELECT template_id, context_key, variant_id, trials, clicks, conversions, updated_at "
            f"FROM {s}.variant_evidence WHERE template_id = ANY($1::text[])"
        )
        self._experiments = (
            f"SELECT {_EXPERIMENT_COLUMNS} FROM {s}.experiments WHERE template_id = ANY($1::text[])"
        )
        self._logged_contexts = (
            f"SELECT request_id, context_key FROM {s}.decisions "
            "WHERE request_id = ANY($1::text[]) AND context_key IS NOT NULL"
        )
        self._sent_contexts = (
            f"SELECT message_id, context_key FROM {s}.rewards "
            "WHERE message_id = ANY($1::text[]) AND kind = 'trial' AND context_key IS NOT NULL"
        )
        self._templates = (
            "SELECT t.id, t.version, t.channel, v.defaults::text AS defaults, "
            "v.variants::text AS variants, v.reward, v.holdout_share, v.topic, v.transactional "
            f"FROM {s}.templates t JOIN {s}.template_versions v "
            "ON v.template_id = t.id AND v.version = t.version WHERE t.id = ANY($1::text[])"
        )
        self._decided = (
            f"SELECT idempotency_key FROM {s}.decisions WHERE idempotency_key = ANY($1::text[])"
        )
        self._record_decisions = (
            f"INSERT INTO {s}.decisions (idempotency_key, request_id, profile_id, template_id, "
            "template_version, variant_id, outcome, context_key, propensity) SELECT * FROM "
            "unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::text[], "
            "$7::text[], $8::text[], $9::float8[]) ON CONFLICT (idempotency_key) DO NOTHING"
        )

    async def connection(self, session: AsyncSession) -> Connection:
        connection: Connection = await driver_connection(session)
        return connection

    # Merges and erasures.

    async def move_decisions(
        self, connection: Connection, moved: Mapping[str, str], erased: Collection[str]
    ) -> None:
        """Give each merged profile's decisions to its survivor; erase the erased people's
        (first: a profile erased, then merged into, keeps what the merge gave it)."""
        if erased:
            await connection.execute(self._erase_decisions, list(erased))
        if moved:
            await connection.execute(self._move_decisions, list(moved), list(moved.values()))

    # The variant experiment.

    async def logged_contexts(
        self, connection: Connection, request_ids: Collection[str]
    ) -> dict[str, str]:
        """The context key logged with each of these requests' decisions, by request id."""
        if not request_ids:
            return {}
        rows = await connection.fetch(self._logged_contexts, list(request_ids))
        return {row["request_id"]: row["context_key"] for row in rows}

    async def sent_contexts(
        self, connection: Connection, message_ids: Collection[str]
    ) -> dict[str, str]:
        """The context each of these messages' sends was counted in, by message id."""
        if not message_ids:
            return {}
        rows = await connection.fetch(self._sent_contexts, list(message_ids))
        return {row["message_id"]: row["context_key"] for row in rows}

    async def count_rewards(
        self,
        connection: Connection,
        rewards: Sequence[Reward],
        *,
        now: datetime,
        half_life_days: float,
    ) -> list[Reward]:
        """Count each (message, kind) once, into its (template, context, variant) evidence,
        discounted as of now: those counted now."""
        if not rewards:
            return []
        rows = await connection.fetch(
            self._claim_rewards,
            [r.message_id for r in rewards],
            [r.kind for r in rewards],
            [r.context_key for r in rewards],
        )
        new = {(row["message_id"], row["kind"]) for row in rows}
        counted = [r for r in rewards if (r.message_id, r.kind) in new]
        added: dict[tuple[str, str, str], list[float]] = {}
        for reward in counted:
            row_key = (reward.template_id, reward.context_key, reward.variant_id)
            sums = added.setdefault(row_key, [0.0, 0.0, 0.0])
            sums[{"trial": 0, "click": 1}.get(reward.kind, 2)] += reward.amount
        if added:
            await connection.execute(
                self._add_evidence,
                [template for template, _, _ in added],
                [context for _, context, _ in added],
                [variant for _, _, variant in added],
                [sums[0] for sums in added.values()],
                [sums[1] for sums in added.values()],
                [sums[2] for sums in added.values()],
                now,
                half_life_days * 86_400.0,
            )
        return counted

    async def evidence(
        self, connection: Connection, template_ids: Collection[str]
    ) -> dict[str, list[EvidenceRow]]:
        """The stored evidence of each of these templates (none yet: no entry)."""
        rows = await connection.fetch(self._evidence, list(template_ids))
        found: dict[str, list[EvidenceRow]] = {}
        for row in rows:
            found.setdefault(row["template_id"], []).append(_evidence_row(row))
        return found

    async def experiments(
        self, connection: Connection, template_ids: Collection[str]
    ) -> dict[str, Experiment]:
        """The experiment of each of these templates evaluated at least once."""
        rows = await connection.fetch(self._experiments, list(template_ids))
        return {row["template_id"]: _experiment(row) for row in rows}

    # Templates and decisions.

    async def templates(
        self, connection: Connection, ids: Collection[str]
    ) -> dict[str, TemplateVersion]:
        """The current version of each of these templates that exists."""
        rows = await connection.fetch(self._templates, list(ids))
        return {
            row["id"]: _template_version(
                row["id"],
                row["version"],
                row["channel"],
                row["defaults"],
                row["variants"],
                row["reward"],
                float(row["holdout_share"]),
                row["topic"],
                row["transactional"],
            )
            for row in rows
        }

    async def decided(self, connection: Connection, keys: Collection[str]) -> set[str]:
        """The idempotency keys among `keys` decided before."""
        rows = await connection.fetch(self._decided, list(keys))
        return {row["idempotency_key"] for row in rows}

    async def record_decisions(self, connection: Connection, rows: Sequence[DecisionRow]) -> None:
        if not rows:
            return
        await connection.execute(
            self._record_decisions,
            [r.idempotency_key for r in rows],
            [r.request_id for r in rows],
            [r.profile_id for r in rows],
            [r.template_id for r in rows],
            [r.template_version for r in rows],
            [r.variant_id for r in rows],
            [r.outcome for r in rows],
            [r.context_key for r in rows],
            [r.propensity for r in rows],
        )


@functools.lru_cache(maxsize=1024)
def _template_version(
    template_id: str,
    version: int,
    channel: str,
    defaults_json: str,
    variants_json: str,
    reward: str,
    holdout_share: float,
    topic: str | None,
    transactional: bool,
) -> TemplateVersion:
    # Keyed by the content too: a template deleted and created again restarts at version 1.
    return TemplateVersion(
        template_id,
        version,
        channel,
        orjson.loads(defaults_json),
        orjson.loads(variants_json),
        reward,
        holdout_share,
        topic,
        transactional,
    )


def decisions_retained(schema: str, keep_days: float) -> Retained:
    """Decisions and counted rewards kept `keep_days`."""
    return Retained(
        "decisions",
        lambda session, limit: ContentStore(session, schema).forget_decisions(keep_days, limit),
    )

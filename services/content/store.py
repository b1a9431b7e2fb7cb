"""The content service's queries; nothing else touches its tables."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.db import checked_schema
from services.content.bandit import VariantStats
from services.content.profiles import ProfileFacts
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

    def current(self) -> TemplateVersion:
        return TemplateVersion(
            self.id,
            self.version,
            self.channel,
            self.defaults,
            self.variants,
            self.reward,
            self.holdout_share,
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


@dataclass(frozen=True)
class RankedVariant:
    """A variant of some template of a channel, with its evidence (for copy suggestions)."""

    template_id: str
    variant: dict[str, Any]
    stats: VariantStats


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


_TEMPLATE_COLUMNS = (
    "t.id, t.name, t.channel, t.version, t.created_at, t.updated_at, "
    "v.defaults, v.variants, v.reward, v.holdout_share"
)


class ContentStore:
    """Queries over one session (the caller's transaction) in the service's schema."""

    def __init__(self, session: AsyncSession, schema: str) -> None:
        self._session = session
        self._schema = checked_schema(schema)

    async def _execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        return await self._session.execute(text(sql.replace("{s}", self._schema)), params or {})

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
            "(template_id, version, defaults, variants, reward, holdout_share) VALUES "
            "(:id, :version, CAST(:defaults AS jsonb), CAST(:variants AS jsonb), :reward, "
            ":holdout_share)",
            {
                "id": template_id,
                "version": version,
                "defaults": _json(content.defaults),
                "variants": _json(content.variants),
                "reward": content.reward,
                "holdout_share": content.holdout_share,
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
        if deleted:
            await self._execute(
                "DELETE FROM {s}.variant_stats WHERE template_id = :id", {"id": template_id}
            )
        return deleted

    # Bandit state.

    async def variant_stats(
        self, template_id: str, variant_ids: Sequence[str], reward: str
    ) -> list[VariantStats]:
        """The evidence of each variant, in the order given (no evidence yet: zeros)."""
        result = await self._execute(
            "SELECT variant_id, trials, clicks, conversions FROM {s}.variant_stats "
            "WHERE template_id = :id AND variant_id = ANY(CAST(:variants AS text[]))",
            {"id": template_id, "variants": list(variant_ids)},
        )
        found = {
            row.variant_id: VariantStats(
                row.variant_id,
                int(row.trials),
                float(row.conversions if reward == "conversions" else row.clicks),
            )
            for row in result
        }
        return [found.get(v, VariantStats(v)) for v in variant_ids]

    async def count_reward(
        self, template_id: str, variant_id: str, message_id: str, kind: str, amount: float = 1.0
    ) -> bool:
        """Count a trial, click or conversion of a message once; False when it already was."""
        result = await self._execute(
            "INSERT INTO {s}.rewards (message_id, kind) VALUES (:message_id, :kind) "
            "ON CONFLICT DO NOTHING RETURNING message_id",
            {"message_id": message_id, "kind": kind},
        )
        if result.scalar_one_or_none() is None:
            return False
        column = {"trial": "trials", "click": "clicks"}.get(kind, "conversions")
        await self._execute(
            f"INSERT INTO {{s}}.variant_stats (template_id, variant_id, {column}) "
            "VALUES (:template_id, :variant_id, :amount) ON CONFLICT (template_id, variant_id) "
            f"DO UPDATE SET {column} = {{s}}.variant_stats.{column} + excluded.{column}",
            {"template_id": template_id, "variant_id": variant_id, "amount": amount},
        )
        return True

    async def ranked_variants(self, channel: str) -> list[RankedVariant]:
        """Every current variant of the channel's templates, with its evidence."""
        rows = [row for row in await self.list_templates() if row.channel == channel]
        ranked: list[RankedVariant] = []
        for row in rows:
            ids = [variant["id"] for variant in row.variants]
            stats = await self.variant_stats(row.id, ids, row.reward)
            ranked.extend(
                RankedVariant(row.id, variant, s)
                for variant, s in zip(row.variants, stats, strict=True)
            )
        return ranked

    # Profiles.

    async def profile(self, profile_id: str) -> ProfileFacts | None:
        profiles = await self._select_profiles([profile_id], "")
        return profiles.get(profile_id)

    async def lock_profiles(self, profile_ids: Collection[str]) -> dict[str, ProfileFacts]:
        """The profiles (created empty when new), locked until the transaction ends."""
        ids = sorted(profile_ids)
        await self._execute(
            "INSERT INTO {s}.profiles (profile_id) SELECT unnest(CAST(:ids AS text[])) "
            "ON CONFLICT DO NOTHING",
            {"ids": ids},
        )
        return await self._select_profiles(ids, "FOR UPDATE")

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

    async def move_decisions(self, survivor: str, merged: Sequence[str]) -> None:
        await self._execute(
            "UPDATE {s}.decisions SET profile_id = :survivor "
            "WHERE profile_id = ANY(CAST(:merged AS text[]))",
            {"survivor": survivor, "merged": list(merged)},
        )

    async def erase_profiles(self, profile_ids: Collection[str]) -> None:
        """Delete everything content holds about these people."""
        for table in ("profiles", "decisions"):
            await self._execute(
                f"DELETE FROM {{s}}.{table} WHERE profile_id = ANY(CAST(:ids AS text[]))",
                {"ids": list(profile_ids)},
            )

    # Decisions.

    async def record_decision(
        self,
        *,
        idempotency_key: str,
        request_id: str,
        profile_id: str,
        template: TemplateVersion,
        variant_id: str | None,
        outcome: str,
    ) -> bool:
        """Record what was decided for a request; False when the key was decided before."""
        result = await self._execute(
            "INSERT INTO {s}.decisions (idempotency_key, request_id, profile_id, template_id, "
            "template_version, variant_id, outcome) VALUES (:key, :request_id, :profile_id, "
            ":template_id, :version, :variant_id, :outcome) ON CONFLICT DO NOTHING "
            "RETURNING idempotency_key",
            {
                "key": idempotency_key,
                "request_id": request_id,
                "profile_id": profile_id,
                "template_id": template.template_id,
                "version": template.version,
                "variant_id": variant_id,
                "outcome": outcome,
            },
        )
        return result.scalar_one_or_none() is not None

    async def decided(self, idempotency_key: str) -> bool:
        result = await self._execute(
            "SELECT 1 FROM {s}.decisions WHERE idempotency_key = :key", {"key": idempotency_key}
        )
        return result.scalar_one_or_none() is not None

    async def outcome_counts(self, template_id: str) -> dict[str, int]:
        result = await self._execute(
            "SELECT outcome, count(*) AS n FROM {s}.decisions WHERE template_id = :id "
            "GROUP BY outcome",
            {"id": template_id},
        )
        return {row.outcome: int(row.n) for row in result}


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
    )

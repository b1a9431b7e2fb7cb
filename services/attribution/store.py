"""The attribution service's queries; nothing else touches its tables."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

import orjson

from libs.common.events.conversion import AttributionModel
from libs.common.retention import Retained, batched_delete, older_than
from libs.common.store import SchemaStore
from services.attribution.campaigns import CampaignTouch
from services.attribution.credit import Touch
from services.attribution.definitions import ConversionDefinition
from services.attribution.insights import HourStats
from services.attribution.paths import Conversion, Touchpoint
from services.attribution.rollups import ConversionKey, RollupKey, Rollups

Dimension = Literal["journey", "node", "channel", "variant"]

# The columns each report dimension groups by: of the rollups, and of `paths.Touchpoint`.
DIMENSION_COLUMNS: dict[Dimension, tuple[str, ...]] = {
    "journey": ("journey_id",),
    "node": ("journey_id", "node_id"),
    "channel": ("channel",),
    "variant": ("template_id", "variant_id"),
}
# Outcomes that did not reach the person: never a touch.
_NOT_TOUCHES = ["message.suppressed", "message.failed"]
# The tables whose rows name a person: merges move them, erasure deletes them.
_PERSONAL_TABLES = ("touchpoints", "campaign_touches", "conversions")
_FORGET_TOUCHPOINTS = batched_delete("touchpoints", older_than("occurred_at"))
_FORGET_CAMPAIGN_TOUCHES = batched_delete("campaign_touches", older_than("occurred_at"))
_COUNTS = (
    "sent",
    "delivered",
    "opened",
    "clicked",
    "suppressed",
    "suppressed_frequency_cap",
    "failed",
)

# The counts of a day: the funnel, not the suppressions and failures.
_DAILY_COUNTS = ("sent", "delivered", "opened", "clicked")


@dataclass(frozen=True)
class DefinitionRow:
    id: str
    definition: ConversionDefinition
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class OutcomeRow:
    """One outcome of a message, as recorded in `touchpoints`."""

    profile_id: str
    outcome: str
    touch: Touch
    template_version: int | None
    frequency_capped: bool = False


@dataclass(frozen=True)
class RecordedConversion:
    conversion_id: str
    definition_id: str
    profile_id: str
    occurred_at: datetime
    value: Decimal | None
    currency: str | None
    attribution_model: AttributionModel
    credits: list[dict[str, Any]]


@dataclass(frozen=True)
class ReportRow:
    key: dict[str, str]
    counts: dict[str, int]
    converted: Decimal
    revenue: dict[str, Decimal]


@dataclass(frozen=True)
class DayTotals:
    day: date
    counts: dict[str, int]
    converted: Decimal
    revenue: dict[str, Decimal]


@dataclass(frozen=True)
class ConversionTotals:
    definition_id: str
    attributed: int
    unattributed: int
    value: dict[str, Decimal]


@dataclass(frozen=True)
class TimeRange:
    start: datetime | None
    end: datetime | None
    journey_id: str | None = None


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


class AttributionStore(SchemaStore):
    """Attribution's queries (SchemaStore: the caller's transaction, the service's schema)."""

    # Touchpoints and conversions.

    async def forget_touches(self, keep_days: float, limit: int) -> int:
        """Touchpoints, then campaign touches, that happened more than `keep_days` ago: at most
        `limit` in all."""
        params = {"seconds": keep_days * 86_400, "limit": limit}
        touchpoints = int((await self._execute(_FORGET_TOUCHPOINTS, params)).rowcount or 0)
        if touchpoints == limit:
            return touchpoints
        params["limit"] = limit - touchpoints
        campaign = await self._execute(_FORGET_CAMPAIGN_TOUCHES, params)
        return touchpoints + int(campaign.rowcount or 0)

    async def record_outcomes(self, outcomes: Sequence[OutcomeRow]) -> list[OutcomeRow]:
        """Store each message's outcomes once; the ones not seen before, to count them."""
        if not outcomes:
            return []
        rows = [
            {
                "profile_id": o.profile_id,
                "message_id": o.touch.message_id,
                "outcome": o.outcome,
                "channel": o.touch.channel,
                "journey_id": o.touch.journey_id,
                "journey_version": o.touch.journey_version,
                "node_id": o.touch.node_id,
                "template_id": o.touch.template_id,
                "template_version": o.template_version,
                "variant_id": o.touch.variant_id,
                "occurred_at": o.touch.occurred_at.isoformat(),
            }
            for o in outcomes
        ]
        result = await self._execute(
            "INSERT INTO {s}.touchpoints (profile_id, message_id, outcome, channel, journey_id, "
            "journey_version, node_id, template_id, template_version, variant_id, occurred_at) "
            "SELECT DISTINCT ON (message_id, outcome) * FROM jsonb_to_recordset(CAST(:rows AS "
            "jsonb)) AS r(profile_id text, message_id text, outcome text, channel text, "
            "journey_id text, journey_version int, node_id text, template_id text, "
            "template_version int, variant_id text, occurred_at timestamptz) "
            "ORDER BY message_id, outcome, occurred_at "
            "ON CONFLICT (message_id, outcome) DO NOTHING RETURNING message_id, outcome",
            {"rows": _json(rows)},
        )
        new = {(row.message_id, row.outcome) for row in result}
        firsts: dict[tuple[str, str], OutcomeRow] = {}
        for o in sorted(outcomes, key=lambda o: o.touch.occurred_at):
            firsts.setdefault((o.touch.message_id, o.outcome), o)
        return [o for key, o in firsts.items() if key in new]

    async def touches(
        self, profile_ids: Collection[str], since: datetime, until: datetime
    ) -> dict[str, list[tuple[str, Touch]]]:
        """The profiles' (outcome, touch) pairs in [since, until]."""
        result = await self._execute(
            "SELECT * FROM {s}.touchpoints WHERE profile_id = ANY(CAST(:ids AS text[])) "
            "AND occurred_at BETWEEN :since AND :until AND outcome <> ALL(:not_touches)",
            {
                "ids": sorted(profile_ids),
                "since": since,
                "until": until,
                "not_touches": _NOT_TOUCHES,
            },
        )
        found: dict[str, list[tuple[str, Touch]]] = {}
        for row in result:
            found.setdefault(row.profile_id, []).append((row.outcome, _touch(row)))
        return found

    async def record_conversions(self, conversions: Sequence[RecordedConversion]) -> set[str]:
        """Store the conversions not handled before; their ids."""
        if not conversions:
            return set()
        rows = [
            {
                "conversion_id": c.conversion_id,
                "definition_id": c.definition_id,
                "profile_id": c.profile_id,
                "occurred_at": c.occurred_at.isoformat(),
                "value": str(c.value) if c.value is not None else None,
                "currency": c.currency,
                "attribution_model": c.attribution_model,
                "attributed": bool(c.credits),
                "credits": c.credits,
            }
            for c in conversions
        ]
        result = await self._execute(
            "INSERT INTO {s}.conversions (conversion_id, definition_id, profile_id, occurred_at, "
            "value, currency, attribution_model, attributed, credits) "
            "SELECT DISTINCT ON (conversion_id) * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) "
            "AS r(conversion_id text, definition_id text, profile_id text, "
            "occurred_at timestamptz, value numeric, currency text, attribution_model text, "
            "attributed boolean, credits jsonb) "
            "ON CONFLICT (conversion_id) DO NOTHING RETURNING conversion_id",
            {"rows": _json(rows)},
        )
        return {row.conversion_id for row in result}

    async def record_campaign_touches(self, touches: Sequence[CampaignTouch]) -> None:
        """Store each campaign call once (a redelivered behaviour is the same call)."""
        if not touches:
            return
        rows = [
            {
                "behaviour_id": t.behaviour_id,
                "profile_id": t.profile_id,
                "occurred_at": t.occurred_at.isoformat(),
                "channel": t.channel,
                "source": t.source,
                "medium": t.medium,
                "campaign": t.name,
            }
            for t in touches
        ]
        await self._execute(
            "INSERT INTO {s}.campaign_touches (behaviour_id, profile_id, occurred_at, channel, "
            "source, medium, campaign) SELECT DISTINCT ON (behaviour_id) * FROM "
            "jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(behaviour_id text, profile_id text, "
            "occurred_at timestamptz, channel text, source text, medium text, campaign text) "
            "ON CONFLICT (behaviour_id) DO NOTHING",
            {"rows": _json(rows)},
        )

    async def move_profiles(self, survivor: str, merged: Sequence[str]) -> None:
        for table in _PERSONAL_TABLES:
            await self._execute(
                f"UPDATE {{s}}.{table} SET profile_id = :survivor "
                "WHERE profile_id = ANY(CAST(:merged AS text[]))",
                {"survivor": survivor, "merged": list(merged)},
            )

    async def erase_profiles(self, profile_ids: Sequence[str]) -> None:
        """Delete what names the people; rollups are counts without a person and stay."""
        for table in _PERSONAL_TABLES:
            await self._execute(
                f"DELETE FROM {{s}}.{table} WHERE profile_id = ANY(CAST(:ids AS text[]))",
                {"ids": list(profile_ids)},
            )

    async def add_rollups(self, rollups: Rollups) -> None:
        """Add a batch's counts; rows in key order, so concurrent batches cannot deadlock."""
        kpis = [_key_row(key) | counts.as_row() for key, counts in sorted(rollups.kpis.items())]
        if kpis:
            await self._execute(
                "INSERT INTO {s}.kpi_rollups AS k SELECT * FROM jsonb_populate_recordset("
                "NULL::{s}.kpi_rollups, CAST(:rows AS jsonb)) ORDER BY 1, 2, 3, 4, 5, 6 "
                "ON CONFLICT ON CONSTRAINT kpi_rollups_pkey DO UPDATE SET "
                + ", ".join(f"{c} = k.{c} + excluded.{c}" for c in (*_COUNTS, "converted")),
                {"rows": _json(kpis)},
            )
        revenue = [
            _key_row(key) | {"currency": currency, "revenue": str(amount)}
            for (key, currency), amount in sorted(rollups.revenue.items())
        ]
        if revenue:
            await self._execute(
                "INSERT INTO {s}.revenue_rollups AS k SELECT * FROM jsonb_populate_recordset("
                "NULL::{s}.revenue_rollups, CAST(:rows AS jsonb)) ORDER BY 1, 2, 3, 4, 5, 6, 7 "
                "ON CONFLICT ON CONSTRAINT revenue_rollups_pkey DO UPDATE SET "
                "revenue = k.revenue + excluded.revenue",
                {"rows": _json(revenue)},
            )
        conversions = [
            _conversion_row(key) | counts.as_row()
            for key, counts in sorted(rollups.conversions.items())
        ]
        if conversions:
            await self._execute(
                "INSERT INTO {s}.conversion_rollups AS k SELECT * FROM jsonb_populate_recordset("
                "NULL::{s}.conversion_rollups, CAST(:rows AS jsonb)) ORDER BY 1, 2, 3 "
                "ON CONFLICT ON CONSTRAINT conversion_rollups_pkey DO UPDATE SET "
                "attributed = k.attributed + excluded.attributed, "
                "unattributed = k.unattributed + excluded.unattributed, "
                "value = k.value + excluded.value",
                {"rows": _json(conversions)},
            )

    # Definitions.

    async def definitions_for(self, events: Collection[str]) -> list[DefinitionRow]:
        result = await self._execute(
            "SELECT * FROM {s}.definitions WHERE event = ANY(CAST(:events AS text[])) ORDER BY id",
            {"events": sorted(events)},
        )
        return [_definition(row) for row in result]

    async def insert_definition(
        self, definition_id: str, definition: ConversionDefinition
    ) -> DefinitionRow | None:
        """The new definition, or None when the id is taken."""
        result = await self._execute(
            "INSERT INTO {s}.definitions (id, event, definition) "
            "VALUES (:id, :event, CAST(:definition AS jsonb)) "
            "ON CONFLICT (id) DO NOTHING RETURNING *",
            _definition_params(definition_id, definition),
        )
        row = result.one_or_none()
        return _definition(row) if row is not None else None

    async def update_definition(
        self, definition_id: str, definition: ConversionDefinition
    ) -> DefinitionRow | None:
        result = await self._execute(
            "UPDATE {s}.definitions SET event = :event, definition = CAST(:definition AS jsonb), "
            "updated_at = now() WHERE id = :id RETURNING *",
            _definition_params(definition_id, definition),
        )
        row = result.one_or_none()
        return _definition(row) if row is not None else None

    async def get_definition(self, definition_id: str) -> DefinitionRow | None:
        result = await self._execute(
            "SELECT * FROM {s}.definitions WHERE id = :id", {"id": definition_id}
        )
        row = result.one_or_none()
        return _definition(row) if row is not None else None

    async def list_definitions(self) -> list[DefinitionRow]:
        result = await self._execute("SELECT * FROM {s}.definitions ORDER BY id")
        return [_definition(row) for row in result]

    async def delete_definition(self, definition_id: str) -> bool:
        result = await self._execute(
            "DELETE FROM {s}.definitions WHERE id = :id RETURNING id", {"id": definition_id}
        )
        return result.one_or_none() is not None

    # Reports.

    async def report(self, dimension: Dimension, scope: TimeRange) -> list[ReportRow]:
        """The rollups summed per value of `dimension` over the scope's hours."""
        columns = DIMENSION_COLUMNS[dimension]
        keys = ", ".join(columns)
        where, params = _scope(scope)
        counts = await self._execute(
            f"SELECT {keys}, "
            + ", ".join(f"sum({c})::bigint AS {c}" for c in _COUNTS)
            + f", sum(converted) AS converted FROM {{s}}.kpi_rollups WHERE {where} "
            f"GROUP BY {keys} ORDER BY {keys}",
            params,
        )
        revenue = await self._execute(
            f"SELECT {keys}, currency, sum(revenue) AS revenue FROM {{s}}.revenue_rollups "
            f"WHERE {where} GROUP BY {keys}, currency",
            params,
        )
        earned: dict[tuple[str, ...], dict[str, Decimal]] = {}
        for row in revenue:
            key = tuple(getattr(row, c) for c in columns)
            earned.setdefault(key, {})[row.currency] = row.revenue
        return [
            ReportRow(
                key={c: getattr(row, c) for c in columns},
                counts={c: int(getattr(row, c)) for c in _COUNTS},
                converted=row.converted,
                revenue=earned.get(tuple(getattr(row, c) for c in columns), {}),
            )
            for row in counts
        ]

    async def conversion_totals(self, scope: TimeRange) -> list[ConversionTotals]:
        where, params = _scope(TimeRange(scope.start, scope.end))
        result = await self._execute(
            "SELECT definition_id, currency, sum(attributed)::bigint AS attributed, "
            "sum(unattributed)::bigint AS unattributed, sum(value) AS value "
            f"FROM {{s}}.conversion_rollups WHERE {where} "
            "GROUP BY definition_id, currency ORDER BY definition_id, currency",
            params,
        )
        totals: dict[str, ConversionTotals] = {}
        for row in result:
            seen = totals.setdefault(
                row.definition_id, ConversionTotals(row.definition_id, 0, 0, {})
            )
            if row.currency:
                seen.value[row.currency] = row.value
            totals[row.definition_id] = ConversionTotals(
                row.definition_id,
                seen.attributed + int(row.attributed),
                seen.unattributed + int(row.unattributed),
                seen.value,
            )
        return list(totals.values())

    async def daily(self, scope: TimeRange) -> list[DayTotals]:
        """The rollups summed per UTC day over the scope's hours, days in order."""
        where, params = _scope(scope)
        counts = await self._execute(
            "SELECT (bucket AT TIME ZONE 'UTC')::date AS day, "
            + ", ".join(f"sum({c})::bigint AS {c}" for c in _DAILY_COUNTS)
            + f", sum(converted) AS converted FROM {{s}}.kpi_rollups WHERE {where} "
            "GROUP BY 1 ORDER BY 1",
            params,
        )
        revenue = await self._execute(
            "SELECT (bucket AT TIME ZONE 'UTC')::date AS day, currency, sum(revenue) AS revenue "
            f"FROM {{s}}.revenue_rollups WHERE {where} GROUP BY 1, 2",
            params,
        )
        earned: dict[date, dict[str, Decimal]] = {}
        for row in revenue:
            earned.setdefault(row.day, {})[row.currency] = row.revenue
        return [
            DayTotals(
                day=row.day,
                counts={c: int(getattr(row, c)) for c in _DAILY_COUNTS},
                converted=row.converted,
                revenue=earned.get(row.day, {}),
            )
            for row in counts
        ]

    async def touches_of(self, profile_id: str, limit: int) -> list[Touchpoint]:
        """The person's touchpoints, every outcome included, newest first, at most `limit`."""
        result = await self._execute(
            "SELECT message_id, occurred_at, outcome, channel, journey_id, node_id, template_id, "
            "variant_id FROM {s}.touchpoints WHERE profile_id = :profile_id "
            "ORDER BY occurred_at DESC, message_id, outcome LIMIT :limit",
            {"profile_id": profile_id, "limit": limit},
        )
        return [_touchpoint(row) for row in result]

    async def conversions_of(self, profile_id: str, limit: int) -> list[RecordedConversion]:
        """The person's conversions, with their credits, newest first, at most `limit`."""
        result = await self._execute(
            "SELECT conversion_id, definition_id, profile_id, occurred_at, value, currency, "
            "attribution_model, CAST(credits AS text) AS credits FROM {s}.conversions "
            "WHERE profile_id = :profile_id ORDER BY occurred_at DESC, conversion_id "
            "LIMIT :limit",
            {"profile_id": profile_id, "limit": limit},
        )
        return [
            RecordedConversion(
                row.conversion_id,
                row.definition_id,
                row.profile_id,
                row.occurred_at,
                row.value,
                row.currency,
                row.attribution_model,
                orjson.loads(row.credits),
            )
            for row in result
        ]

    async def credit_touches(
        self, since: datetime, until: datetime, limit: int
    ) -> list[tuple[str, Touchpoint]]:
        """(profile id, touch) for each outcome that reached someone in [since, until), at most
        `limit`."""
        result = await self._execute(
            "SELECT profile_id, message_id, occurred_at, outcome, channel, journey_id, node_id, "
            "template_id, variant_id FROM {s}.touchpoints WHERE occurred_at >= :since "
            "AND occurred_at < :until AND outcome <> ALL(:not_touches) LIMIT :limit",
            {"since": since, "until": until, "not_touches": _NOT_TOUCHES, "limit": limit},
        )
        return [(row.profile_id, _touchpoint(row)) for row in result]

    async def campaign_touches(
        self, since: datetime, until: datetime, limit: int
    ) -> list[CampaignTouch]:
        """The campaign calls in [since, until), at most `limit`."""
        result = await self._execute(
            "SELECT * FROM {s}.campaign_touches WHERE occurred_at >= :since "
            "AND occurred_at < :until LIMIT :limit",
            {"since": since, "until": until, "limit": limit},
        )
        return [
            CampaignTouch(
                row.behaviour_id,
                row.profile_id,
                row.occurred_at,
                row.channel,
                row.source,
                row.medium,
                row.campaign,
            )
            for row in result
        ]

    async def conversions_between(
        self, since: datetime, until: datetime, definition_id: str | None
    ) -> list[Conversion]:
        """The conversions in [since, until), of one definition or all."""
        result = await self._execute(
            "SELECT conversion_id, definition_id, profile_id, occurred_at, value, currency "
            "FROM {s}.conversions WHERE occurred_at >= :since AND occurred_at < :until "
            "AND (CAST(:definition_id AS text) IS NULL OR definition_id = :definition_id)",
            {"since": since, "until": until, "definition_id": definition_id},
        )
        return [
            Conversion(
                row.conversion_id,
                row.definition_id,
                row.profile_id,
                row.occurred_at,
                row.value,
                row.currency,
            )
            for row in result
        ]

    async def send_hours(self, scope: TimeRange) -> list[HourStats]:
        """Messages by the hour of the day (UTC) they were sent, and how many were clicked."""
        where, params = _scope(scope, time_column="occurred_at")
        result = await self._execute(
            "SELECT extract(hour FROM sent.at AT TIME ZONE 'UTC')::int AS hour, "
            "count(*) AS sent, count(clicked.message_id) AS clicked "
            "FROM (SELECT message_id, min(occurred_at) AS at FROM {s}.touchpoints "
            f"WHERE outcome = 'message.sent' AND {where} GROUP BY message_id) sent "
            "LEFT JOIN (SELECT DISTINCT message_id FROM {s}.touchpoints "
            "WHERE outcome = 'message.clicked') clicked USING (message_id) "
            "GROUP BY 1 ORDER BY 1",
            params,
        )
        return [HourStats(row.hour, int(row.sent), int(row.clicked)) for row in result]


def _scope(scope: TimeRange, *, time_column: str = "bucket") -> tuple[str, dict[str, Any]]:
    clauses = ["true"]
    params: dict[str, Any] = {}
    if scope.start is not None:
        clauses.append(f"{time_column} >= :start")
        params["start"] = scope.start
    if scope.end is not None:
        clauses.append(f"{time_column} < :end")
        params["end"] = scope.end
    if scope.journey_id is not None:
        clauses.append("journey_id = :journey_id")
        params["journey_id"] = scope.journey_id
    return " AND ".join(clauses), params


def _key_row(key: RollupKey) -> dict[str, Any]:
    return {
        "bucket": key.bucket.isoformat(),
        "journey_id": key.journey_id,
        "node_id": key.node_id,
        "channel": key.channel,
        "template_id": key.template_id,
        "variant_id": key.variant_id,
    }


def _conversion_row(key: ConversionKey) -> dict[str, Any]:
    return {
        "bucket": key.bucket.isoformat(),
        "definition_id": key.definition_id,
        "currency": key.currency,
    }


def _touchpoint(row: Any) -> Touchpoint:
    return Touchpoint(
        row.message_id,
        row.occurred_at,
        row.outcome,
        row.channel,
        row.journey_id,
        row.node_id,
        row.template_id,
        row.variant_id,
    )


def _touch(row: Any) -> Touch:
    return Touch(
        message_id=row.message_id,
        occurred_at=row.occurred_at,
        channel=row.channel,
        journey_id=row.journey_id,
        journey_version=row.journey_version,
        node_id=row.node_id,
        template_id=row.template_id,
        variant_id=row.variant_id,
    )


def _definition_params(definition_id: str, definition: ConversionDefinition) -> dict[str, Any]:
    return {
        "id": definition_id,
        "event": definition.event,
        "definition": definition.model_dump_json(),
    }


def _definition(row: Any) -> DefinitionRow:
    return DefinitionRow(
        row.id,
        ConversionDefinition.model_validate(row.definition),
        row.created_at,
        row.updated_at,
    )


def touches_retained(schema: str, keep_days: float) -> Retained:
    """Touchpoints and campaign touches kept `keep_days` after they happened."""
    return Retained(
        "touches",
        lambda session, limit: AttributionStore(session, schema).forget_touches(keep_days, limit),
    )

"""The attribution REST API: conversion definitions (CRUD), KPI and Markov reports, insights."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import AwareDatetime
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.common.auth import require_admin
from libs.common.db import create_sessions, session_transaction
from libs.common.errors import MANAGEMENT_ERRORS, ApiError, error_responses
from services.attribution import insights
from services.attribution.definitions import ConversionDefinition
from services.attribution.markov import paths_from, removal_effects
from services.attribution.schemas import (
    CONVERSION_ID_PATTERN,
    ConversionList,
    ConversionRequest,
    ConversionResponse,
    ConversionTotalsResponse,
    Dimension,
    InsightResponse,
    InsightsResponse,
    MarkovDimension,
    MarkovReport,
    MarkovState,
    Rates,
    Report,
    ReportRow,
)
from services.attribution.settings import AttributionSettings
from services.attribution.store import (
    AttributionStore,
    DefinitionRow,
    PathTouch,
    TimeRange,
)
from services.attribution.store import ReportRow as StoredRow

_T = TypeVar("_T")
ConversionIdPath = Annotated[str, Path(pattern=CONVERSION_ID_PATTERN)]
_NOT_FOUND = error_responses(404)
_Text = Annotated[str, Query(min_length=1, max_length=128, pattern=r"^[^\x00]*$")]
From = Annotated[AwareDatetime | None, Query(alias="from", description="Inclusive start.")]
To = Annotated[AwareDatetime | None, Query(description="Exclusive end.")]


def conversions_router(engine: AsyncEngine, schema: str) -> APIRouter:
    router = APIRouter(
        prefix="/conversions",
        tags=["conversions"],
        dependencies=[Depends(require_admin)],
        responses=MANAGEMENT_ERRORS,
    )
    transaction = _transactions(engine, schema)

    @router.post("", status_code=201, responses=error_responses(409))
    async def create_conversion(request: ConversionRequest) -> ConversionResponse:
        """Define a conversion: behaviours matching it from now on are credited."""
        conversion_id = request.id or f"cnv_def_{uuid.uuid4().hex[:20]}"
        async with transaction() as store:
            row = await store.insert_definition(conversion_id, _definition(request))
        if row is None:
            raise ApiError(
                409, "conversion_exists", f"Conversion {conversion_id!r} already exists.", "id"
            )
        return _response(row)

    @router.get("")
    async def list_conversions() -> ConversionList:
        async with transaction() as store:
            rows = await store.list_definitions()
        return ConversionList(conversions=[_response(row) for row in rows])

    @router.get("/{conversion_id}", responses=_NOT_FOUND)
    async def get_conversion(conversion_id: ConversionIdPath) -> ConversionResponse:
        async with transaction() as store:
            row = await store.get_definition(conversion_id)
        return _response(_found(row, conversion_id))

    @router.put("/{conversion_id}", responses=_NOT_FOUND)
    async def replace_conversion(
        conversion_id: ConversionIdPath, request: ConversionRequest
    ) -> ConversionResponse:
        """Change a definition; conversions already credited keep their credits."""
        if request.id is not None and request.id != conversion_id:
            raise ApiError(422, "id_mismatch", "The body's id differs from the path's.", "id")
        async with transaction() as store:
            row = await store.update_definition(conversion_id, _definition(request))
        return _response(_found(row, conversion_id))

    @router.delete("/{conversion_id}", status_code=204, responses=_NOT_FOUND)
    async def delete_conversion(conversion_id: ConversionIdPath) -> Response:
        async with transaction() as store:
            deleted = await store.delete_definition(conversion_id)
        _found(deleted or None, conversion_id)
        return Response(status_code=204)

    return router


def reports_router(engine: AsyncEngine, settings: AttributionSettings) -> APIRouter:
    router = APIRouter(
        tags=["reports"], dependencies=[Depends(require_admin)], responses=MANAGEMENT_ERRORS
    )
    transaction = _transactions(engine, settings.schema_name)

    @router.get("/reports/markov")
    async def markov_report(
        by: MarkovDimension,
        start: From = None,
        to: To = None,
        conversion_id: Annotated[str | None, Query(pattern=CONVERSION_ID_PATTERN)] = None,
    ) -> MarkovReport:
        """Conversions shared out by each channel, journey or variant's Markov removal effect."""
        scope = _scope(start, to, None)
        limit = settings.attribution_markov_max_touchpoints
        async with transaction() as store:
            touched = await store.path_touches(scope, limit)
            converted = await store.conversion_times(scope, conversion_id)
        touches: dict[str, list[tuple[datetime, str]]] = {}
        for touch in touched:
            touches.setdefault(touch.profile_id, []).append((touch.occurred_at, _state(touch, by)))
        result = removal_effects(paths_from(touches, converted))
        return MarkovReport(
            by=by,
            paths=result.paths,
            conversions=result.conversions,
            conversion_probability=result.conversion_probability,
            truncated=len(touched) >= limit,
            states=[
                MarkovState(
                    key=effect.state,
                    removal_effect=effect.removal_effect,
                    share=effect.share,
                    attributed_conversions=effect.conversions,
                )
                for effect in result.effects
            ],
        )

    @router.get("/reports/{dimension}")
    async def report(
        dimension: Dimension,
        journey_id: _Text | None = None,
        start: From = None,
        to: To = None,
    ) -> Report:
        """Sends, outcomes, credited conversions and revenue per journey, node, channel or
        variant, summed from the hourly rollups."""
        scope = _scope(start, to, journey_id)
        async with transaction() as store:
            rows = await store.report(dimension, scope)
            totals = await store.conversion_totals(scope)
        return Report(
            dimension=dimension,
            journey_id=journey_id,
            from_=start,
            to=to,
            rows=[_report_row(row) for row in rows],
            conversions=[
                ConversionTotalsResponse(
                    definition_id=t.definition_id,
                    attributed=t.attributed,
                    unattributed=t.unattributed,
                    value={currency: _decimal(v) for currency, v in t.value.items()},
                )
                for t in totals
            ],
        )

    @router.get("/insights")
    async def list_insights(
        journey_id: _Text | None = None, start: From = None, to: To = None
    ) -> InsightsResponse:
        """Suggestions the rollups support, each with its numbers and how sure it is."""
        scope = _scope(start, to, journey_id)
        async with transaction() as store:
            variants = await store.report("variant", scope)
            channels = await store.report("channel", scope)
            hours = await store.send_hours(scope)
        found = [
            *insights.winning_variants(
                [_variant_stats(row) for row in variants if row.key["variant_id"]],
                min_trials=settings.attribution_insight_min_trials,
                probability=settings.attribution_insight_probability,
            ),
            *insights.lagging_channels(
                [_channel_stats(row) for row in channels],
                min_trials=settings.attribution_insight_min_trials,
                confidence=settings.attribution_insight_probability,
            ),
            *insights.lagging_hours(
                hours,
                min_trials=settings.attribution_insight_min_trials,
                confidence=settings.attribution_insight_probability,
            ),
            *insights.suppressing_caps(
                [_channel_stats(row) for row in channels],
                min_trials=settings.attribution_insight_min_trials,
                max_share=settings.attribution_cap_suppression_share,
            ),
        ]
        return InsightsResponse(
            insights=[
                InsightResponse(
                    kind=i.kind, message=i.message, probability=i.probability, evidence=i.evidence
                )
                for i in found
            ]
        )

    return router


Transactions = Callable[[], AbstractAsyncContextManager[AttributionStore]]


def _transactions(engine: AsyncEngine, schema: str) -> Transactions:
    sessions = create_sessions(engine)

    @asynccontextmanager
    async def transaction() -> AsyncIterator[AttributionStore]:
        async with session_transaction(sessions) as session:
            yield AttributionStore(session, schema)

    return transaction


def _definition(request: ConversionRequest) -> ConversionDefinition:
    return ConversionDefinition.model_validate(request.model_dump(exclude={"id"}))


def _found(value: _T | None, conversion_id: str) -> _T:
    if value is None:
        raise ApiError(404, "conversion_not_found", f"There is no conversion {conversion_id!r}.")
    return value


def _response(row: DefinitionRow) -> ConversionResponse:
    return ConversionResponse(
        id=row.id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        **row.definition.model_dump(),
    )


def _scope(start: datetime | None, end: datetime | None, journey_id: str | None) -> TimeRange:
    start, end = _utc(start, "from"), _utc(end, "to")
    if start is not None and end is not None and start >= end:
        raise ApiError(422, "invalid_range", "`from` must be before `to`.", "from")
    return TimeRange(start, end, journey_id)


def _utc(moment: datetime | None, field: str) -> datetime | None:
    try:
        return moment.astimezone(UTC) if moment is not None else None
    except OverflowError:
        # Year 1 at +14:00 is before year 1 in UTC: no database stores that instant.
        raise ApiError(422, "invalid_range", f"`{field}` is out of range.", field) from None


def _state(touch: PathTouch, by: MarkovDimension) -> str:
    if by == "channel":
        return touch.channel
    if by == "journey":
        return touch.journey_id
    return f"{touch.template_id}/{touch.variant_id or ''}"


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _decimal(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def _report_row(row: StoredRow) -> ReportRow:
    counts = row.counts
    converted = float(row.converted)
    return ReportRow(
        **row.key,
        **counts,
        converted=converted,
        revenue={currency: _decimal(amount) for currency, amount in row.revenue.items()},
        rates=Rates(
            delivery=_ratio(counts["delivered"], counts["sent"]),
            open=_ratio(counts["opened"], counts["delivered"]),
            click=_ratio(counts["clicked"], counts["delivered"]),
            conversion=_ratio(converted, counts["sent"]),
        ),
    )


def _variant_stats(row: StoredRow) -> insights.VariantStats:
    return insights.VariantStats(
        template_id=row.key["template_id"],
        variant_id=row.key["variant_id"],
        sent=row.counts["sent"],
        clicked=row.counts["clicked"],
        converted=float(row.converted),
    )


def _channel_stats(row: StoredRow) -> insights.ChannelStats:
    return insights.ChannelStats(
        channel=row.key["channel"],
        sent=row.counts["sent"],
        clicked=row.counts["clicked"],
        suppressed=row.counts["suppressed"],
        suppressed_frequency_cap=row.counts["suppressed_frequency_cap"],
        failed=row.counts["failed"],
    )

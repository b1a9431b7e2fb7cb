"""The attribution REST API: conversion definitions (CRUD), KPI and credit reports, insights."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import AwareDatetime

from libs.common.api import StoreTransactions, from_state, transactions_of
from libs.common.auth import require_admin
from libs.common.errors import MANAGEMENT_ERRORS, ApiError, error_responses
from libs.common.events.fields import EARLIEST_EVENT_TIME
from services.attribution import credit_report, insights
from services.attribution.credit_report import CreditModel
from services.attribution.definitions import ConversionDefinition, format_duration
from services.attribution.paths import CreditRule, Span, lookback
from services.attribution.schemas import (
    CONVERSION_ID_PATTERN,
    ConversionList,
    ConversionRequest,
    ConversionResponse,
    ConversionTotalsResponse,
    CreditReportResponse,
    CreditResponse,
    CreditRowResponse,
    DailyReport,
    DayResponse,
    Dimension,
    InsightResponse,
    InsightsResponse,
    ProfileConversionResponse,
    ProfileTouchesResponse,
    Rates,
    Report,
    ReportRow,
    TouchResponse,
)
from services.attribution.settings import AttributionSettings
from services.attribution.store import (
    AttributionStore,
    DayTotals,
    DefinitionRow,
    RecordedConversion,
    TimeRange,
)
from services.attribution.store import ReportRow as StoredRow

_T = TypeVar("_T")
ConversionIdPath = Annotated[str, Path(pattern=CONVERSION_ID_PATTERN)]
_NOT_FOUND = error_responses(404)
_Text = Annotated[str, Query(min_length=1, max_length=128, pattern=r"^[^\x00]*$")]
From = Annotated[AwareDatetime | None, Query(alias="from", description="Inclusive start.")]
To = Annotated[AwareDatetime | None, Query(description="Exclusive end.")]


conversions_router = APIRouter(
    prefix="/conversions",
    tags=["conversions"],
    dependencies=[Depends(require_admin)],
    responses=MANAGEMENT_ERRORS,
)
reports_router = APIRouter(
    tags=["reports"], dependencies=[Depends(require_admin)], responses=MANAGEMENT_ERRORS
)
profiles_router = APIRouter(
    prefix="/profiles",
    tags=["profiles"],
    dependencies=[Depends(require_admin)],
    responses=MANAGEMENT_ERRORS,
)
ProfileIdPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^\x00]*$")]
Stores = Annotated[StoreTransactions[AttributionStore], Depends(transactions_of(AttributionStore))]
SettingsDep = Annotated[AttributionSettings, Depends(from_state("settings", AttributionSettings))]


@conversions_router.post("", status_code=201, responses=error_responses(409))
async def create_conversion(request: ConversionRequest, stores: Stores) -> ConversionResponse:
    """Define a conversion: behaviours matching it from now on are credited."""
    conversion_id = request.id or f"cnv_def_{uuid.uuid4().hex[:20]}"
    async with stores() as store:
        row = await store.insert_definition(conversion_id, _definition(request))
    if row is None:
        raise ApiError(
            409, "conversion_exists", f"Conversion {conversion_id!r} already exists.", "id"
        )
    return _response(row)


@conversions_router.get("")
async def list_conversions(stores: Stores) -> ConversionList:
    async with stores() as store:
        rows = await store.list_definitions()
    return ConversionList(conversions=[_response(row) for row in rows])


@conversions_router.get("/{conversion_id}", responses=_NOT_FOUND)
async def get_conversion(conversion_id: ConversionIdPath, stores: Stores) -> ConversionResponse:
    async with stores() as store:
        row = await store.get_definition(conversion_id)
    return _response(_found(row, conversion_id))


@conversions_router.put("/{conversion_id}", responses=_NOT_FOUND)
async def replace_conversion(
    conversion_id: ConversionIdPath, request: ConversionRequest, stores: Stores
) -> ConversionResponse:
    """Change a definition; conversions already credited keep their credits."""
    if request.id is not None and request.id != conversion_id:
        raise ApiError(422, "id_mismatch", "The body's id differs from the path's.", "id")
    async with stores() as store:
        row = await store.update_definition(conversion_id, _definition(request))
    return _response(_found(row, conversion_id))


@conversions_router.delete("/{conversion_id}", status_code=204, responses=_NOT_FOUND)
async def delete_conversion(conversion_id: ConversionIdPath, stores: Stores) -> Response:
    async with stores() as store:
        deleted = await store.delete_definition(conversion_id)
    _found(deleted or None, conversion_id)
    return Response(status_code=204)


@reports_router.get("/reports/credit", responses=_NOT_FOUND)
async def report_credit(
    model: CreditModel,
    by: Dimension = "channel",
    start: From = None,
    to: Annotated[AwareDatetime | None, Query(description="Exclusive end; now if absent.")] = None,
    conversion_id: Annotated[str | None, Query(pattern=CONVERSION_ID_PATTERN)] = None,
    *,
    stores: Stores,
    settings: SettingsDep,
) -> CreditReportResponse:
    """Conversions and value each channel, journey, node or variant earned under `model`
    over the range, campaign visits competing with messages; by channel, with each
    channel's Markov removal effect. Computed from the stored touchpoints on each call."""
    span = _span(start, to)
    limit = settings.attribution_report_max_touchpoints
    async with stores() as store:
        rules = await _rules(store, conversion_id)
        reach = lookback(rules.values())
        messages = await store.credit_touches(*span.touches_read(reach), limit + 1)
        campaigns = await store.campaign_touches(*span.touches_read(reach), limit + 1)
        conversions = await store.conversions_between(*span.conversions_read(reach), conversion_id)
    if len(messages) + len(campaigns) > limit:
        raise ApiError(
            422,
            "range_too_large",
            f"The range holds more than {limit} touchpoints: narrow `from` and `to`.",
            "from",
        )
    # Seconds of CPU for a large range: off the event loop, which also runs the consumer.
    report = await asyncio.to_thread(
        credit_report.over_range, model, by, span, rules, messages, campaigns, conversions
    )
    return _credit_response(report, span, conversion_id)


@reports_router.get("/reports/daily")
async def report_daily(
    journey_id: _Text | None = None,
    start: From = None,
    to: To = None,
    *,
    stores: Stores,
) -> DailyReport:
    """Sends, outcomes, credited conversions and revenue per UTC day, summed from the hourly
    rollups: the report's figures over time."""
    scope = _scope(start, to, journey_id)
    async with stores() as store:
        days = await store.daily(scope)
    return DailyReport(
        journey_id=journey_id, from_=start, to=to, days=[_day_response(day) for day in days]
    )


@reports_router.get("/reports/{dimension}")
async def report(
    dimension: Dimension,
    journey_id: _Text | None = None,
    start: From = None,
    to: To = None,
    *,
    stores: Stores,
) -> Report:
    """Sends, outcomes, credited conversions and revenue per journey, node, channel or
    variant, summed from the hourly rollups."""
    scope = _scope(start, to, journey_id)
    async with stores() as store:
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


@reports_router.get("/insights")
async def list_insights(
    stores: Stores,
    settings: SettingsDep,
    journey_id: _Text | None = None,
    start: From = None,
    to: To = None,
) -> InsightsResponse:
    """Suggestions the rollups support, each with its numbers and how sure it is."""
    scope = _scope(start, to, journey_id)
    async with stores() as store:
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


@profiles_router.get("/{profile_id}/touches")
async def profile_touches(
    profile_id: ProfileIdPath,
    stores: Stores,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ProfileTouchesResponse:
    """The person's touches (each outcome of each message, the first time) and conversions
    with the credit each message earned, newest first, at most `limit` of each."""
    async with stores() as store:
        touches = await store.touches_of(profile_id, limit)
        conversions = await store.conversions_of(profile_id, limit)
    return ProfileTouchesResponse(
        profile_id=profile_id,
        touches=[TouchResponse.model_validate(touch, from_attributes=True) for touch in touches],
        conversions=[_profile_conversion(conversion) for conversion in conversions],
    )


def _profile_conversion(conversion: RecordedConversion) -> ProfileConversionResponse:
    return ProfileConversionResponse(
        conversion_id=conversion.conversion_id,
        definition_id=conversion.definition_id,
        occurred_at=conversion.occurred_at,
        value=None if conversion.value is None else _decimal(conversion.value),
        currency=conversion.currency,
        attribution_model=conversion.attribution_model,
        credits=[CreditResponse.model_validate(credit) for credit in conversion.credits],
    )


def _day_response(day: DayTotals) -> DayResponse:
    return DayResponse(
        day=day.day,
        **day.counts,
        converted=float(day.converted),
        revenue={currency: _decimal(amount) for currency, amount in day.revenue.items()},
    )


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


def _span(start: datetime | None, end: datetime | None) -> Span:
    """The range of a credit report: from the earliest event time, until now, by default."""
    scope = _scope(start, end, None)
    span = Span(scope.start or EARLIEST_EVENT_TIME, scope.end or datetime.now(UTC))
    if span.start >= span.end:
        raise ApiError(422, "invalid_range", "`from` must be before `to` (now by default).", "from")
    return span


def _utc(moment: datetime | None, field: str) -> datetime | None:
    try:
        return moment.astimezone(UTC) if moment is not None else None
    except OverflowError:
        # Year 1 at +14:00 is before year 1 in UTC: no database stores that instant.
        raise ApiError(422, "invalid_range", f"`{field}` is out of range.", field) from None


async def _rules(store: AttributionStore, conversion_id: str | None) -> dict[str, CreditRule]:
    """The credit rule of each definition reported: the one asked for, or all of them."""
    if conversion_id is None:
        rows = await store.list_definitions()
    else:
        rows = [_found(await store.get_definition(conversion_id), conversion_id)]
    return {row.id: CreditRule.of(row.definition) for row in rows}


def _credit_response(
    report: credit_report.CreditReport, span: Span, conversion_id: str | None
) -> CreditReportResponse:
    credited = sum(row.conversions for row in report.rows)
    return CreditReportResponse(
        model=report.model,
        by=report.by,
        conversion_id=conversion_id,
        from_=span.start,
        to=span.end,
        lookback=format_duration(report.lookback),
        conversions=report.conversions,
        attributed=report.attributed,
        null_paths=report.null_paths,
        conversion_probability=report.chain.conversion_probability,
        credit_residual=report.calibration.residual if report.calibration else None,
        rows=[
            CreditRowResponse(
                **row.key,
                attributed_conversions=row.conversions,
                share=_ratio(row.conversions, credited),
                revenue={currency: _decimal(amount) for currency, amount in row.revenue.items()},
                removal_effect=row.effect.removal_effect if row.effect else None,
                removal_share=row.effect.share if row.effect else None,
            )
            for row in report.rows
        ],
    )


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

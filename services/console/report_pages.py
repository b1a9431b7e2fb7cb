"""The reports screen: journey, channel and variant funnels, revenue per day, the credit models
side by side, and the insights, over a range of days (and one journey, if asked).

Every figure is the attribution service's; the console only lays it out (charts.py) beside a
table of the same numbers.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from libs.common.errors import ApiError
from services.console.access import SignedIn
from services.console.charts import Chart, columns_by_day, grouped_bars
from services.console.pages import page
from services.console.schemas import SEGMENT_ID_PATTERN
from services.console.sources import CREDIT_MODELS, Span
from services.console.upstream import UpstreamDep, part_of_page

router = APIRouter(include_in_schema=False)
STAGES: Final = ("sent", "delivered", "opened", "clicked", "converted")
_DEFAULT_DAYS: Final = 30
_MAX_DAYS: Final = 366
# The rows a funnel chart draws (the most sent first); the table beside it has them all.
_CHART_ROWS: Final = 8
_JOURNEY_ID: Final = re.compile(SEGMENT_ID_PATTERN)
_DIMENSIONS: Final = {"journey": "Journeys", "channel": "Channels", "variant": "Variants"}


@dataclass(frozen=True)
class Funnel:
    """One dimension's funnel: its rows (label and the five counts) and their chart."""

    by: str
    title: str
    rows: list[tuple[str, list[str]]]
    chart: Chart


@dataclass(frozen=True)
class Revenue:
    currency: str
    chart: Chart


@router.get("/reports")
async def reports_page(
    viewer: SignedIn,
    upstream: UpstreamDep,
    start: Annotated[str, Query(alias="from", max_length=32)] = "",
    end: Annotated[str, Query(alias="to", max_length=32)] = "",
    journey_id: Annotated[str, Query(max_length=128)] = "",
) -> HTMLResponse:
    """The reports over the days asked (the last 30 by default), of one journey if named; an
    empty field of the form is the default."""
    if journey_id and not _JOURNEY_ID.match(journey_id):
        raise ApiError(422, "invalid_request", "journey_id: not a journey id", "journey_id")
    first, last = _days(_day(start, "from"), _day(end, "to"))
    span = Span(_midnight(first), _midnight(last + timedelta(days=1)), journey_id or None)
    attribution = upstream.attribution
    notes: list[str] = []
    funnels, daily, credits, insights = await asyncio.gather(
        asyncio.gather(
            *(
                part_of_page(attribution.funnel(by, span), {"rows": []}, f"{by} report", notes)
                for by in _DIMENSIONS
            )
        ),
        part_of_page(attribution.daily(span), {"days": []}, "revenue per day report", notes),
        asyncio.gather(
            *(
                part_of_page(
                    attribution.credit(model, span), {"rows": []}, f"{model} credit report", notes
                )
                for model in CREDIT_MODELS
            )
        ),
        part_of_page(attribution.insights(span), [], "insights report", notes),
    )
    days = _every_day(first, last, daily["days"])
    channels, by_model = _credits_by_channel(credits)
    return page(
        "reports.html",
        viewer=viewer,
        first=first,
        last=last,
        journey_id=journey_id or "",
        stages=STAGES,
        funnels=[_funnel(by, answer) for by, answer in zip(_DIMENSIONS, funnels, strict=True)],
        revenue=_revenue(days),
        days=days,
        models=CREDIT_MODELS,
        channels=channels,
        by_model=by_model,
        credit_chart=grouped_bars(
            "Credited conversions by channel under each model",
            CREDIT_MODELS,
            [
                (channel, [by_model[model].get(channel, 0.0) for model in CREDIT_MODELS])
                for channel in channels
            ],
            _count,
        ),
        insights=insights,
        notes=notes,
    )


def _day(text: str, field: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ApiError(422, "invalid_request", f"{field}: not a day (YYYY-MM-DD)", field) from None


def _days(start: date | None, end: date | None) -> tuple[date, date]:
    """The first and last day reported (both included): the last 30 days by default."""
    last = end or datetime.now(UTC).date()
    first = start or last - timedelta(days=_DEFAULT_DAYS - 1)
    if first > last:
        raise ApiError(422, "invalid_range", "from: the first day is after the last", "from")
    if (last - first).days >= _MAX_DAYS:
        raise ApiError(422, "invalid_range", f"to: at most {_MAX_DAYS} days at once", "to")
    return first, last


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _funnel(by: str, answer: dict[str, Any]) -> Funnel:
    rows = sorted(
        ((_row_label(by, row), [float(row[stage]) for stage in STAGES]) for row in answer["rows"]),
        key=lambda row: (-row[1][0], row[0]),
    )
    title = f"{_DIMENSIONS[by]}: sent → delivered → opened → clicked → converted"
    cells = [(label, [_count(value) for value in values]) for label, values in rows]
    return Funnel(by, title, cells, grouped_bars(title, STAGES, rows[:_CHART_ROWS], _count))


def _row_label(by: str, row: dict[str, Any]) -> str:
    if by == "journey":
        return str(row["journey_id"])
    if by == "channel":
        return str(row["channel"])
    return f"{row['template_id']} · {row['variant_id'] or 'one variant'}"


def _every_day(first: date, last: date, answered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each day of the range, those the service did not name with nothing in them."""
    by_day = {row["day"]: row for row in answered}
    empty = {"sent": 0, "delivered": 0, "opened": 0, "clicked": 0, "converted": 0.0, "revenue": {}}
    return [
        {**empty, **by_day.get(day.isoformat(), {}), "day": day}
        for day in (first + timedelta(days=n) for n in range((last - first).days + 1))
    ]


def _revenue(days: list[dict[str, Any]]) -> list[Revenue]:
    """One chart per currency earned in the range, the largest total first."""
    totals: dict[str, Decimal] = {}
    for day in days:
        for currency, amount in day["revenue"].items():
            totals[currency] = totals.get(currency, Decimal(0)) + _decimal(amount)
    currencies = sorted(totals, key=lambda c: (-totals[c], c))
    return [
        Revenue(
            currency,
            columns_by_day(
                f"Revenue per day ({currency})",
                [(day["day"], float(_decimal(day["revenue"].get(currency, "0")))) for day in days],
                _amount,
            ),
        )
        for currency in currencies
    ]


def _credits_by_channel(
    answers: list[dict[str, Any]],
) -> tuple[list[str], dict[str, dict[str, float]]]:
    """The channels any model credited, and each model's credited conversions per channel."""
    by_model: dict[str, dict[str, float]] = {}
    for model, answer in zip(CREDIT_MODELS, answers, strict=True):
        by_model[model] = {
            row["channel"] or "campaign visits": float(row["attributed_conversions"])
            for row in answer["rows"]
        }
    channels = sorted({channel for credited in by_model.values() for channel in credited})
    return channels, by_model


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        return Decimal(0)


def _count(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


def _amount(value: float) -> str:
    return f"{value:,.2f}"

"""The attribution REST API's request and response models."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.attribution.credit_report import CreditModel
from services.attribution.definitions import ConversionDefinition

CONVERSION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
ConversionId = Annotated[str, StringConstraints(pattern=CONVERSION_ID_PATTERN)]
Dimension = Literal["journey", "node", "channel", "variant"]


class ConversionRequest(ConversionDefinition):
    """A conversion definition to create (POST) or its new version (PUT)."""

    id: ConversionId | None = Field(
        default=None, description="Chosen by the caller on create; generated when absent."
    )


class ConversionResponse(ConversionDefinition):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    created_at: datetime
    updated_at: datetime


class ConversionList(BaseModel):
    conversions: list[ConversionResponse]


class Rates(BaseModel):
    """Ratios of the counts; null when the denominator is zero."""

    delivery: float | None = Field(description="delivered / sent")
    open: float | None = Field(description="opened / delivered")
    click: float | None = Field(description="clicked / delivered")
    conversion: float | None = Field(description="converted / sent")


class ReportRow(BaseModel):
    journey_id: str | None = None
    node_id: str | None = None
    channel: str | None = None
    template_id: str | None = None
    variant_id: str | None = Field(
        default=None, description="'' for messages of a single-variant template."
    )
    sent: int
    delivered: int
    opened: int
    clicked: int
    suppressed: int
    suppressed_frequency_cap: int
    failed: int
    converted: float = Field(description="Credited conversions; fractional under multi-touch.")
    revenue: dict[str, str] = Field(
        description="Credited revenue per ISO 4217 currency, as decimal strings."
    )
    rates: Rates


class ConversionTotalsResponse(BaseModel):
    definition_id: str
    attributed: int
    unattributed: int = Field(description="Conversions with no touchpoint in their window.")
    value: dict[str, str] = Field(description="Total conversion value per currency.")


class Report(BaseModel):
    dimension: Dimension
    journey_id: str | None
    from_: datetime | None = Field(alias="from")
    to: datetime | None
    rows: list[ReportRow]
    conversions: list[ConversionTotalsResponse]

    model_config = ConfigDict(populate_by_name=True)


class CreditRowResponse(BaseModel):
    """One channel, journey, node or variant; null lineage fields are campaign visits."""

    journey_id: str | None = None
    node_id: str | None = None
    channel: str | None = None
    template_id: str | None = None
    variant_id: str | None = None
    attributed_conversions: float = Field(description="Credited conversions, fractional.")
    share: float | None = Field(
        description="Its part of the range's credited conversions; null when none was."
    )
    revenue: dict[str, str] = Field(
        description="Credited value per ISO 4217 currency, as decimal strings."
    )
    removal_effect: float | None = Field(
        description="By channel: the fraction of conversions the chain loses without it."
    )
    removal_share: float | None = Field(
        description="By channel: its removal effect over the sum of the channels' effects."
    )


class CreditReportResponse(BaseModel):
    model: CreditModel
    by: Dimension
    conversion_id: str | None = Field(description="The one definition reported, or null: all.")
    from_: datetime = Field(alias="from")
    to: datetime
    lookback: str = Field(
        description="The longest window of the definitions reported (ISO 8601): the silence "
        "that ends a null path, and how long after its last touch it is decided."
    )
    conversions: int = Field(description="Conversions in the range: the converting paths.")
    attributed: int = Field(description="Conversions with at least one touch in their window.")
    null_paths: int = Field(description="Paths decided in the range without a conversion.")
    conversion_probability: float = Field(
        description="The fitted chain's chance that a path converts."
    )
    credit_residual: float | None = Field(
        description="markov: the conversions' worth of credit that would have to move between "
        "channels for each channel's credited conversions to equal `attributed` times its "
        "removal share (half the summed absolute gaps); 0 when the paths allow it. Null under "
        "the rule models."
    )
    rows: list[CreditRowResponse]

    model_config = ConfigDict(populate_by_name=True)


class InsightResponse(BaseModel):
    kind: str
    message: str
    probability: float = Field(description="How sure the insight is, in [0, 1].")
    evidence: dict[str, Any]


class InsightsResponse(BaseModel):
    insights: list[InsightResponse]


class TouchResponse(BaseModel):
    """One outcome of a message sent to the person, the first time it happened."""

    message_id: str
    outcome: str = Field(description="message.sent, message.delivered, message.clicked, ...")
    channel: str
    journey_id: str | None
    node_id: str | None
    template_id: str | None
    variant_id: str | None
    occurred_at: datetime


class CreditResponse(BaseModel):
    message_id: str
    share: float = Field(description="The part of the conversion the message earned.")


class ProfileConversionResponse(BaseModel):
    conversion_id: str
    definition_id: str
    occurred_at: datetime
    value: str | None = Field(description="A decimal string; null when the behaviour had none.")
    currency: str | None
    attribution_model: str
    credits: list[CreditResponse] = Field(description="Empty: no touch was in its window.")


class ProfileTouchesResponse(BaseModel):
    """What attribution knows of one person: their touches and their conversions' credits."""

    profile_id: str
    touches: list[TouchResponse] = Field(description="Newest first.")
    conversions: list[ProfileConversionResponse] = Field(description="Newest first.")


class DayResponse(BaseModel):
    """One UTC day of the rollups."""

    day: date
    sent: int
    delivered: int
    opened: int
    clicked: int
    converted: float
    revenue: dict[str, str] = Field(description="Credited revenue per currency, decimal strings.")


class DailyReport(BaseModel):
    journey_id: str | None
    from_: datetime | None = Field(alias="from")
    to: datetime | None
    days: list[DayResponse] = Field(description="Days with anything sent or credited, in order.")

    model_config = ConfigDict(populate_by_name=True)

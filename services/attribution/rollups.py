"""A batch's additions to the KPI rollups, gathered in memory and written in one go."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from services.attribution.credit import Touch

# The outcome types and the rollup column each one counts in.
OUTCOME_COLUMNS = {
    "message.sent": "sent",
    "message.delivered": "delivered",
    "message.opened": "opened",
    "message.clicked": "clicked",
    "message.suppressed": "suppressed",
    "message.failed": "failed",
}


@dataclass(frozen=True, order=True)
class RollupKey:
    bucket: datetime
    journey_id: str
    node_id: str
    channel: str
    template_id: str
    variant_id: str


@dataclass(frozen=True, order=True)
class ConversionKey:
    bucket: datetime
    definition_id: str
    currency: str


@dataclass
class KpiCounts:
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    suppressed: int = 0
    suppressed_frequency_cap: int = 0
    failed: int = 0
    converted: Decimal = Decimal(0)

    def as_row(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "delivered": self.delivered,
            "opened": self.opened,
            "clicked": self.clicked,
            "suppressed": self.suppressed,
            "suppressed_frequency_cap": self.suppressed_frequency_cap,
            "failed": self.failed,
            "converted": str(self.converted),
        }


@dataclass
class ConversionCounts:
    attributed: int = 0
    unattributed: int = 0
    value: Decimal = Decimal(0)

    def as_row(self) -> dict[str, Any]:
        return {
            "attributed": self.attributed,
            "unattributed": self.unattributed,
            "value": str(self.value),
        }


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def rollup_key(touch: Touch, at: datetime) -> RollupKey:
    return RollupKey(
        hour_of(at),
        touch.journey_id,
        touch.node_id,
        touch.channel,
        touch.template_id,
        touch.variant_id or "",
    )


@dataclass
class Rollups:
    kpis: dict[RollupKey, KpiCounts] = field(default_factory=dict)
    revenue: dict[tuple[RollupKey, str], Decimal] = field(default_factory=dict)
    conversions: dict[ConversionKey, ConversionCounts] = field(default_factory=dict)

    def count_outcome(self, outcome: str, touch: Touch, *, frequency_capped: bool) -> None:
        """One new outcome of a message, in the hour it happened."""
        counts = self.kpis.setdefault(rollup_key(touch, touch.occurred_at), KpiCounts())
        column = OUTCOME_COLUMNS[outcome]
        setattr(counts, column, getattr(counts, column) + 1)
        if frequency_capped:
            counts.suppressed_frequency_cap += 1

    def count_credit(
        self,
        touch: Touch,
        converted_at: datetime,
        share: float,
        value: Decimal | None,
        currency: str | None,
    ) -> None:
        """A message's share of a conversion, and of its value, in the conversion's hour."""
        key = rollup_key(touch, converted_at)
        part = Decimal(repr(share))
        counts = self.kpis.setdefault(key, KpiCounts())
        counts.converted += part
        if value is not None and currency is not None:
            self.revenue[(key, currency)] = self.revenue.get((key, currency), Decimal(0)) + (
                value * part
            )

    def count_conversion(
        self,
        definition_id: str,
        converted_at: datetime,
        *,
        attributed: bool,
        value: Decimal | None,
        currency: str | None,
    ) -> None:
        key = ConversionKey(hour_of(converted_at), definition_id, currency or "")
        counts = self.conversions.setdefault(key, ConversionCounts())
        if attributed:
            counts.attributed += 1
        else:
            counts.unattributed += 1
        if value is not None:
            counts.value += value

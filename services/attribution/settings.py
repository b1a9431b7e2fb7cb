"""Settings of the attribution service: the evidence an insight needs, and the credit report's
bound."""

from __future__ import annotations

from pydantic import Field

from libs.common.settings import Settings


class AttributionSettings(Settings):
    service_name: str = "attribution"
    http_port: int = 8107

    attribution_insight_min_trials: int = Field(
        default=100,
        ge=1,
        description="Sends each variant or channel needs before an insight may speak about it.",
    )
    attribution_insight_probability: float = Field(
        default=0.95,
        gt=0.5,
        lt=1,
        description="How sure an insight must be (probability best, or one-sided confidence).",
    )
    attribution_cap_suppression_share: float = Field(
        default=0.2,
        gt=0,
        le=1,
        description="Share of a channel's messages suppressed by frequency caps above which "
        "the caps are reported as suppressing too much.",
    )
    attribution_report_max_touchpoints: int = Field(
        default=200_000,
        ge=1,
        description="Touchpoints (message outcomes and campaign calls) one credit report reads "
        "at most; a range holding more is refused.",
    )
    attribution_touch_retention_days: float = Field(
        default=400,
        gt=0,
        description="How long touchpoints (message outcomes) and campaign touches are kept; then "
        "they are deleted. A conversion credits only touches of this period, whatever its "
        "definition's window; conversions and KPI rollups are kept.",
    )

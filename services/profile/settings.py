"""Settings of the profile service: identity sources, history size, feature thresholds and the
predictive scores."""

from __future__ import annotations

from pydantic import Field

from libs.common.settings import Settings


class ProfileSettings(Settings):
    service_name: str = "profile"
    http_port: int = 8102
    # Profile's per-batch statements cost the same for 500 events as for 2,000: bigger batches
    # measured ~25% more events/s (docs/benchmarks.md).
    batch_max_records: int = 2000

    profile_external_id_kinds: list[str] = Field(
        default=["wechat_openid", "wechat_unionid", "crm_id"],
        description="Traits and context keys that identify a person, besides user id, "
        "anonymous id, email and phone.",
    )
    profile_behaviour_chunk_rows: int = Field(
        default=500,
        ge=1,
        description="Import rows' behaviours that travel as one `behavior.identified_chunk`.",
    )
    profile_behaviour_chunk_bytes: int = Field(
        default=256 * 1024,
        ge=1,
        description="The most bytes of behaviours one `behavior.identified_chunk` holds: below "
        "the broker's largest message.",
    )
    profile_event_history: int = Field(
        default=200, ge=1, description="Recent events kept per profile for GET /events."
    )
    profile_event_retention_days: float = Field(
        default=400,
        gt=0,
        description="How long an event stays in a profile's history (GET /events), whatever "
        "profile_event_history; then it is deleted.",
    )
    profile_revenue_events: list[str] = Field(
        default=["Order Completed", "order_completed", "purchase", "checkout_completed"],
        description="Track events whose properties.revenue (else properties.total) is an order "
        "(a purchase, for the predictive scores). Names match exactly.",
    )
    profile_refund_events: list[str] = Field(
        default=["Order Refunded", "order_refunded"],
        description="Track events whose properties.revenue (else properties.total) is taken "
        "off the profile's revenue.",
    )
    profile_purchase_days_kept: int = Field(
        default=1000,
        ge=2,
        description="Purchase days kept per profile for the predictive scores and backtests; "
        "older ones are folded into counts (docs/profile.md).",
    )
    # Days may be fractions (0.5 is twelve hours), so a test or a trial can shorten them.
    lifecycle_new_days: float = Field(default=7, ge=0)
    lifecycle_active_days: float = Field(default=14, gt=0)
    lifecycle_active_min_activity: float = Field(
        default=3.0, ge=0, description="Decayed event count an active profile has at least."
    )
    lifecycle_at_risk_days: float = Field(default=30, gt=0)
    lifecycle_dormant_days: float = Field(default=90, gt=0)
    lifecycle_at_risk_churn_risk: float = Field(
        default=0.7,
        gt=0,
        le=1,
        description="Churn risk from which a profile the recency rules call active is at_risk.",
    )
    profile_review_interval_ms: int = Field(
        default=30_000,
        ge=10,
        description="How often profiles whose stage or RFM recency has aged are looked for.",
    )
    profile_review_batch: int = Field(
        default=500, ge=1, description="Profiles reviewed per transaction."
    )
    activity_half_life_days: float = Field(default=14.0, gt=0)
    category_half_life_days: float = Field(default=30.0, gt=0)
    rfm_recency_days: list[int] = Field(
        default=[7, 30, 90, 180], description="Days since the last order for scores 5, 4, 3, 2."
    )
    rfm_frequency_orders: list[int] = Field(
        default=[10, 5, 3, 2], description="Orders for frequency scores 5, 4, 3, 2."
    )
    rfm_monetary_revenue: list[float] = Field(
        default=[5000, 1000, 500, 100], description="Revenue for monetary scores 5, 4, 3, 2."
    )
    profile_prediction_fit_interval_hours: float = Field(
        default=24.0,
        gt=0,
        description="How often the purchase models are fitted again over every profile.",
    )
    profile_prediction_rescore_batch: int = Field(
        default=500, ge=1, description="Profiles re-scored per transaction after a fit."
    )
    profile_churn_horizon_days: float = Field(
        default=90.0, gt=0, description="scores.churn_risk: P(no purchase in this many days)."
    )

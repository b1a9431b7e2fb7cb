"""REST request and response models of the profile service."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from libs.common.events.profile import LifecycleStage


class RfmScores(BaseModel):
    rfm: int = Field(description="Recency, frequency and monetary scores as one number, e.g. 455.")
    recency: int = Field(ge=1, le=5)
    frequency: int = Field(ge=1, le=5)
    monetary: int = Field(ge=1, le=5)


class Engagement(BaseModel):
    """What became of the messages sent to the person, and the conversions credited to them."""

    by_channel: dict[str, dict[str, int]] = Field(
        description="Channel -> outcome (sent, delivered, opened, clicked, …) -> count."
    )
    last_engaged_at: datetime | None = Field(description="The last open or click.")
    attributed_conversions: float = Field(description="Conversion credit shares, summed.")
    attributed_revenue: dict[str, float] = Field(
        description="Currency -> conversion value credited to messages sent to the person."
    )


class PredictiveScores(BaseModel):
    """The purchase models' view of the person as of `scored_at`, rounded to two significant
    figures and no finer than hundredths (docs/models/predictive-scores.md)."""

    p_alive: float = Field(description="P(the person has not stopped buying).")
    expected_purchases_30d: float = Field(description="Purchase days expected in 30 days.")
    expected_purchases_90d: float
    expected_purchases_365d: float
    expected_value_365d: float = Field(description="Expected purchases times value per purchase.")
    churn_risk: float = Field(description="P(no purchase within `churn_horizon_days`).")
    churn_horizon_days: float
    scored_at: datetime = Field(description="The moment the scores are for.")
    fit_id: int = Field(description="The fit whose models computed them (GET /predictions/model).")


class Predictions(BaseModel):
    scores: PredictiveScores | None = Field(description="Null until the person is scored.")
    unscored_because: str | None = Field(
        description="Why there are no scores: no purchase yet, no model fitted yet (and why)…"
    )


class ProfileOut(BaseModel):
    """A person as the profile service knows them; computed features are as of the request."""

    id: str
    created_at: datetime
    first_seen: datetime | None
    last_seen: datetime | None
    identifiers: list[str] = Field(description="`<type>:<value>`: user_id, anonymous_id, email…")
    traits: dict[str, Any]
    tags: list[str]
    counters: dict[str, int] = Field(description="Events seen, by event name.")
    lifecycle_stage: LifecycleStage | None
    scores: RfmScores | None = Field(description="Absent until the first order.")
    orders: int
    revenue: float
    top_categories: list[str]
    category_scores: dict[str, float] = Field(description="Decayed interest, as of now.")
    segments: dict[str, int] = Field(description="Segment id -> version the profile is in.")
    engagement: Engagement
    predictions: Predictions


class ProfileList(BaseModel):
    profiles: list[ProfileOut] = Field(description="In id order.")
    next_after: str | None = Field(
        description="Pass as `after` for the next page; null on the last page."
    )


class ProfileEventOut(BaseModel):
    seq: int
    message_id: str
    event: str
    kind: str
    occurred_at: datetime
    properties: dict[str, Any]


class ProfileEventPage(BaseModel):
    events: list[ProfileEventOut] = Field(description="Newest first.")
    next_before: int | None = Field(
        description="Pass as `before` for the next (older) page; null on the last page."
    )


class ErasureAccepted(BaseModel):
    erasure_request_id: str
    profile_id: str


class PurchaseModelOut(BaseModel):
    """BG/NBD: purchase rates per day ~ Gamma(r, alpha); dropout after a purchase ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float


class ValueModelOut(BaseModel):
    """Gamma-Gamma value per purchase: p, q, v; null when too few repeat buyers to fit, and
    every profile is then given `fallback_mean`."""

    p: float | None
    q: float | None
    v: float | None
    fallback_mean: float | None
    population_mean: float = Field(description="The mean value per purchase of anyone.")


class FitOut(BaseModel):
    """One fit of the purchase models, and the re-score of every profile that followed it."""

    fit_id: int
    fitted_at: datetime
    profiles: int = Field(description="Profiles with purchases the models were fitted over.")
    repeat_buyers: int = Field(description="Those of them with more than one purchase day.")
    error: str | None = Field(description="Why the models could not be fitted; null if fitted.")
    purchase_model: PurchaseModelOut | None
    value_model: ValueModelOut | None
    rescored: int = Field(description="Profiles re-scored with this fit so far.")
    announced: int = Field(description="Of those, profiles whose scores or stage changed.")
    rescored_at: datetime | None = Field(description="When the re-score finished; null if not.")


class PredictionModelOut(BaseModel):
    current: FitOut | None = Field(description="The fit whose models score; null before one.")
    latest: FitOut | None = Field(description="The latest fit, a failed one included.")
    churn_horizon_days: float


class BacktestRequest(BaseModel):
    cutoff: datetime = Field(
        description="Fit on the purchases before this moment (UTC without a zone)."
    )
    horizon_days: float = Field(
        default=90, gt=0, le=3650, description="Predict and compare the days after the cutoff."
    )
    include_profiles: bool = Field(default=False, description="Add every profile's outcome.")


class CalibrationRowOut(BaseModel):
    past_repeats: int = Field(description="Repeat purchases before the cutoff (the last: or more).")
    profiles: int
    mean_predicted: float | None
    mean_actual: float | None


class ProfileOutcomeOut(BaseModel):
    profile_id: str
    repeat_purchases: int = Field(description="Before the cutoff.")
    recency_days: float = Field(description="From the first purchase day to the last.")
    age_days: float = Field(description="From the first purchase day to the cutoff.")
    predicted_purchases: float
    actual_purchases: int
    churn_risk: float


class BacktestOut(BaseModel):
    """Predictions made at the cutoff against the purchase days that followed it."""

    cutoff: datetime
    horizon_days: float
    profiles: int = Field(description="Profiles whose first purchase is before the cutoff.")
    purchase_model: PurchaseModelOut
    correlation: float | None = Field(
        description="Pearson, predicted vs actual purchases; null when either is constant."
    )
    predicted_total: float
    actual_total: int
    churn_auc: float | None = Field(
        description="AUC of churn_risk for no purchase in the horizon; null with one class."
    )
    calibration: list[CalibrationRowOut]
    outcomes: list[ProfileOutcomeOut] | None = Field(description="With include_profiles.")

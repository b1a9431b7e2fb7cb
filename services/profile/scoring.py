"""Predictive scores of profiles: the purchase models fitted over every profile with purchases,
and each profile's scores from them, rounded to what the models can tell (predictions.py)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.profile.predictions import (
    BgNbdParams,
    GammaGammaParams,
    HistoryArrays,
    PurchaseHistory,
    fit_bgnbd,
    fit_gamma_gamma,
    score_many,
)

SCORE_NAMES = (
    "p_alive",
    "expected_purchases_30d",
    "expected_purchases_90d",
    "expected_purchases_365d",
    "expected_value_365d",
    "churn_risk",
)
# Scores keep two significant figures and nothing finer than hundredths: the models' own
# uncertainty is larger than that, and a daily re-score then changes (and announces) only the
# scores that moved enough to matter, not every profile's as time passes.
_SIGNIFICANT_FIGURES = 2
_FINEST_DECIMALS = 2


@dataclass(frozen=True)
class FittedModels:
    """The purchase-count (BG/NBD) and value (Gamma-Gamma) models of one fit."""

    purchases: BgNbdParams
    value: GammaGammaParams
    profiles: int
    repeat_buyers: int


@dataclass(frozen=True)
class ScoreModel:
    """Fitted models as stored, with the fit they came from."""

    fit_id: int
    fitted_at: float
    models: FittedModels


@dataclass(frozen=True)
class PredictedScores:
    """One profile's scores as last computed: rounded values by name, the moment they are for,
    and the fit they came from."""

    values: Mapping[str, float]
    scored_at: float
    fit_id: int

    @property
    def churn_risk(self) -> float | None:
        return self.values.get("churn_risk")

    def to_json(self) -> dict[str, Any]:
        return {"values": dict(self.values), "scored_at": self.scored_at, "fit_id": self.fit_id}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> PredictedScores:
        return cls(dict(document["values"]), document["scored_at"], document["fit_id"])


def fit_models(histories: Sequence[PurchaseHistory]) -> FittedModels:
    """Fit both models; ValueError when there are too few histories (predictions.fit_bgnbd)."""
    columns = HistoryArrays.of(histories)
    return FittedModels(
        purchases=fit_bgnbd(columns),
        value=fit_gamma_gamma(columns),
        profiles=len(columns),
        repeat_buyers=int(np.count_nonzero(columns.frequency)),
    )


def predict(
    model: ScoreModel,
    histories: Mapping[str, PurchaseHistory],
    as_of: float,
    churn_horizon_days: float,
) -> dict[str, PredictedScores]:
    """Each profile's rounded scores at `as_of`, from its history then."""
    if not histories:
        return {}
    models = model.models
    scores = score_many(
        models.purchases, models.value, HistoryArrays.of(histories.values()), churn_horizon_days
    )
    columns = {name: getattr(scores, name) for name in SCORE_NAMES}
    return {
        profile_id: PredictedScores(
            {name: rounded(float(column[row])) for name, column in columns.items()},
            as_of,
            model.fit_id,
        )
        for row, profile_id in enumerate(histories)
    }


def rounded(value: float) -> float:
    """`value` to two significant figures, and to no finer than hundredths."""
    if value == 0 or not math.isfinite(value):
        return value
    magnitude = math.floor(math.log10(abs(value)))
    return round(value, min(_FINEST_DECIMALS, _SIGNIFICANT_FIGURES - 1 - magnitude))

"""Simulator scenario: predictive purchase scores fitted on a planted BG/NBD population.

Customers follow the generative story of Fader, Hardie & Lee (2005): a purchase rate
λ ~ Gamma(r, alpha) per day and a dropout probability p ~ Beta(a, b) each; the first purchase
falls uniformly in the first `acquisition_days` of the calibration period, purchases come as a
Poisson process, and after each repeat purchase the customer leaves for good with probability p.
Purchase values follow the Gamma-Gamma model (Fader & Hardie 2013). The backtest of
services/profile/predictions.py fits on the calibration period and predicts the holdout.

Two references bound the churn AUC from above: scores from the planted population parameters
(no fitting error), and each customer's own rate and state at the cutoff (knowledge no model of
purchase histories can have). The churn AUC is judged against them, not only against its target.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench.decisions.result import Curve, Figure, ScenarioResult
from services.profile.predictions import (
    CALIBRATION_TOP,
    BacktestReport,
    BgNbdParams,
    GammaGammaParams,
    HistoryArrays,
    ProfileOutcome,
    auc,
    backtest,
    fit_gamma_gamma,
    score_many,
)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
Purchases = dict[str, list[tuple[datetime, float]]]

CHURN_AUC_TARGET = 0.8


@dataclass(frozen=True)
class Planted:
    """The truth section: population size, periods (days) and the two models' parameters."""

    customers: int
    start: datetime
    calibration_days: float
    acquisition_days: float
    holdout_days: float
    bgnbd: BgNbdParams
    spend: GammaGammaParams

    @classmethod
    def from_truth(cls, truth: Mapping[str, Any]) -> Planted:
        planted = cls(
            customers=int(truth["customers"]),
            start=datetime.fromisoformat(truth["start"]),
            calibration_days=float(truth["calibration_days"]),
            acquisition_days=float(truth["acquisition_days"]),
            holdout_days=float(truth["holdout_days"]),
            bgnbd=BgNbdParams(**{k: float(v) for k, v in truth["bgnbd"].items()}),
            spend=GammaGammaParams(**{k: float(v) for k, v in truth["gamma_gamma"].items()}),
        )
        if planted.acquisition_days > planted.calibration_days:
            raise ValueError("acquisition_days: first purchases must fall in the calibration")
        return planted

    @property
    def cutoff(self) -> datetime:
        return self.start + timedelta(days=self.calibration_days)


@dataclass(frozen=True)
class Customers:
    """Each customer's hidden traits; the first purchase is on `first_day` (days from start)."""

    rate: FloatArray
    dropout: FloatArray
    spend_rate: FloatArray
    first_day: FloatArray


@dataclass(frozen=True)
class Simulation:
    """Every purchase by profile id, and the day each customer left (inf: still there)."""

    purchases: Purchases
    left_on: FloatArray
    index_of: dict[str, int]


def run(truth: Mapping[str, Any], seed: int) -> ScenarioResult:
    """Plant the customers, simulate their purchases, backtest, and compare with the truth."""
    planted = Planted.from_truth(truth)
    rng = np.random.default_rng(seed)
    customers = plant(planted, rng)
    simulation = simulate(planted, customers, rng)
    report = backtest(
        simulation.purchases, planted.cutoff, planted.holdout_days, with_outcomes=True
    )
    assert report.outcomes is not None  # asked for above
    references = _reference_aucs(planted, customers, simulation, report.outcomes)
    spend = fit_gamma_gamma([outcome.history for outcome in report.outcomes])
    return _result(planted, report, references, spend, simulation.purchases)


def plant(planted: Planted, rng: np.random.Generator) -> Customers:
    n = planted.customers
    bgnbd, spend = planted.bgnbd, planted.spend
    return Customers(
        rate=rng.gamma(bgnbd.r, 1.0 / bgnbd.alpha, n),
        dropout=rng.beta(bgnbd.a, bgnbd.b, n),
        spend_rate=rng.gamma(spend.q, 1.0 / spend.v, n),
        first_day=rng.uniform(0.0, planted.acquisition_days, n),
    )


def simulate(planted: Planted, customers: Customers, rng: np.random.Generator) -> Simulation:
    """Every purchase up to the end of the holdout, with its moment and value."""
    end = planted.calibration_days + planted.holdout_days
    left_on = np.full(planted.customers, np.inf)
    who = [np.arange(planted.customers)]
    when = [customers.first_day]
    # One round per purchase number: everyone still buying draws the wait to their next one.
    buying, clock = who[0], customers.first_day
    while buying.size:
        clock = clock + rng.exponential(1.0 / customers.rate[buying])
        in_time = clock < end
        buying, clock = buying[in_time], clock[in_time]
        who.append(buying)
        when.append(clock)
        leaves = rng.random(buying.size) < customers.dropout[buying]
        left_on[buying[leaves]] = clock[leaves]
        buying, clock = buying[~leaves], clock[~leaves]
    index_of = {f"c{i:06d}": i for i in range(planted.customers)}
    purchases = _purchases(
        planted, customers, index_of, np.concatenate(who), np.concatenate(when), rng
    )
    return Simulation(purchases, left_on, index_of)


def _purchases(
    planted: Planted,
    customers: Customers,
    index_of: Mapping[str, int],
    who: IntArray,
    when: FloatArray,
    rng: np.random.Generator,
) -> Purchases:
    values = np.round(rng.gamma(planted.spend.p, 1.0 / customers.spend_rate[who]), 2)
    profile_ids = list(index_of)
    purchases: Purchases = {profile_id: [] for profile_id in profile_ids}
    for index in np.lexsort((when, who)):
        moment = planted.start + timedelta(days=float(when[index]))
        purchases[profile_ids[who[index]]].append((moment, float(values[index])))
    return purchases


@dataclass(frozen=True)
class ReferenceAucs:
    planted_parameters: float
    own_traits: float


def _reference_aucs(
    planted: Planted,
    customers: Customers,
    simulation: Simulation,
    outcomes: tuple[ProfileOutcome, ...],
) -> ReferenceAucs:
    quiet = np.array([outcome.actual_purchases == 0 for outcome in outcomes])
    histories = HistoryArrays.of(outcome.history for outcome in outcomes)
    planted_risk = score_many(
        planted.bgnbd, planted.spend, histories, planted.holdout_days
    ).churn_risk
    # Someone who left buys nothing; someone still there buys nothing with prob. exp(-λ H).
    index = np.array([simulation.index_of[outcome.profile_id] for outcome in outcomes])
    gone = simulation.left_on[index] < planted.calibration_days
    own_risk = np.where(gone, 1.0, np.exp(-customers.rate[index] * planted.holdout_days))
    return ReferenceAucs(auc(planted_risk, quiet), auc(own_risk, quiet))


def _result(
    planted: Planted,
    report: BacktestReport,
    references: ReferenceAucs,
    spend: GammaGammaParams,
    purchases: Purchases,
) -> ScenarioResult:
    total_error = 100.0 * (report.predicted_total - report.actual_total) / report.actual_total
    figures = [
        Figure("churn AUC", report.churn_auc, target=CHURN_AUC_TARGET),
        Figure("churn AUC with the planted parameters", references.planted_parameters),
        Figure("churn AUC with each customer's own rate and state", references.own_traits),
        Figure("correlation of predicted and actual holdout purchases", report.correlation),
        Figure("holdout purchases predicted", report.predicted_total),
        Figure("holdout purchases actual", float(report.actual_total)),
        Figure("holdout purchases error", total_error, unit="%"),
    ]
    curves = [
        Curve("mean predicted", [row.mean_predicted for row in report.calibration]),
        Curve("mean actual", [row.mean_actual for row in report.calibration]),
    ]
    return ScenarioResult(
        name="churn",
        figures=figures,
        curves=curves,
        x_label=f"repeat purchases before the cutoff, plus one (last point: {CALIBRATION_TOP}+)",
        y_label=f"purchases per customer in the {planted.holdout_days:g}-day holdout",
        details=_details(planted, report, spend, purchases),
    )


def _details(
    planted: Planted, report: BacktestReport, spend: GammaGammaParams, purchases: Purchases
) -> dict[str, Any]:
    fitted = report.params
    return {
        "customers": report.profiles,
        "purchases": sum(len(p) for p in purchases.values()),
        "holdout_days": planted.holdout_days,
        "bgnbd": {
            name: {"planted": getattr(planted.bgnbd, name), "fitted": getattr(fitted, name)}
            for name in ("r", "alpha", "a", "b")
        },
        "gamma_gamma": {
            name: {"planted": getattr(planted.spend, name), "fitted": getattr(spend, name)}
            for name in ("p", "q", "v", "population_mean")
        },
        "gamma_gamma_fallback": spend.fallback,
        "calibration": [
            {
                "past_repeat_purchases": (
                    f"{row.past_repeats}+"
                    if row.past_repeats == CALIBRATION_TOP
                    else str(row.past_repeats)
                ),
                "customers": row.profiles,
                "mean_predicted": row.mean_predicted,
                "mean_actual": row.mean_actual,
            }
            for row in report.calibration
        ],
    }

"""Predictive purchase scores: formulas against hand and published values, fits against planted
populations, predictions against simulated futures."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from numpy.typing import NDArray

from services.profile.predictions import (
    CALIBRATION_TOP,
    MIN_HISTORIES,
    BgNbdParams,
    GammaGammaParams,
    HistoryArrays,
    PurchaseHistory,
    auc,
    backtest,
    bgnbd_log_likelihood,
    churn_risk,
    expected_average_value,
    expected_purchases,
    fit_bgnbd,
    fit_gamma_gamma,
    gamma_gamma_log_likelihood,
    histories_from_purchases,
    p_alive,
    score,
    score_many,
)

FloatArray = NDArray[np.float64]

# The CDNOW estimates of Fader, Hardie & Lee (2005) per week, and in days (alpha is a rate's
# rate parameter, so it scales with the time unit: 4.414 weeks = 30.898 days).
CDNOW_WEEKS = BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
CDNOW_DAYS = BgNbdParams(r=0.243, alpha=4.414 * 7, a=0.793, b=2.426)
# Fader & Hardie (2013), CDNOW spend.
CDNOW_SPEND = GammaGammaParams(p=6.25, q=3.74, v=15.44)


@dataclass(frozen=True)
class Simulated:
    histories: HistoryArrays
    holdout_purchases: FloatArray


def simulate(
    params: BgNbdParams, ages: FloatArray, holdout_days: float, rng: np.random.Generator
) -> Simulated:
    """The BG/NBD story in continuous time: each customer's history over their age T, and their
    purchases in (T, T + holdout]."""
    n = ages.size
    rate = rng.gamma(params.r, 1 / params.alpha, n)
    dropout = rng.beta(params.a, params.b, n)
    x, t_x, holdout = np.zeros(n), np.zeros(n), np.zeros(n)
    clock = np.zeros(n)
    buying = np.arange(n)
    while buying.size:
        clock[buying] += rng.exponential(1 / rate[buying])
        before = clock[buying] < ages[buying]
        after = ~before & (clock[buying] < ages[buying] + holdout_days)
        x[buying[before]] += 1
        t_x[buying[before]] = clock[buying[before]]
        holdout[buying[after]] += 1
        buying = buying[before | after]
        buying = buying[rng.random(buying.size) >= dropout[buying]]
    return Simulated(HistoryArrays(x, t_x, ages, np.zeros(n)), holdout)


def test_log_likelihood_matches_a_hand_computed_value() -> None:
    # r = alpha = a = b = 1. x = 1, t_x = 1, T = 2: B(1,2)/B(1,1) Γ(2)/(Γ(1) 3^2) + B(2,1)/B(1,1)
    # Γ(2)/(Γ(1) 2^2) = 1/18 + 1/8 = 13/72. x = 0, T = 2: B(1,1)/B(1,1) · 1/3 = 1/3.
    ones = BgNbdParams(1.0, 1.0, 1.0, 1.0)
    histories = [PurchaseHistory(1, 1.0, 2.0, 10.0), PurchaseHistory(0, 0.0, 2.0, 0.0)]
    assert bgnbd_log_likelihood(ones, histories) == pytest.approx(
        math.log(13 / 72) + math.log(1 / 3), rel=1e-12
    )


def test_gamma_gamma_log_likelihood_matches_a_hand_computed_value() -> None:
    # p = 1, q = 2, v = 1: one purchase of 1 has density ∫ nu e^(-nu) · nu e^(-nu) dnu = 2 / 2^3.
    params = GammaGammaParams(p=1.0, q=2.0, v=1.0)
    histories = [PurchaseHistory(1, 3.0, 5.0, 1.0), PurchaseHistory(0, 0.0, 5.0, 0.0)]
    assert gamma_gamma_log_likelihood(params, histories) == pytest.approx(math.log(0.25))


def test_expected_purchases_match_the_paper_in_weeks_and_in_days() -> None:
    # CDNOW's first customer (x = 2, t_x = 30.43, T = 38.86 weeks): 1.226 purchases expected in
    # the next 39 weeks in Fader and Hardie's spreadsheet implementation (brucehardie.com note
    # 004), a value the lifetimes package tests as well.
    in_weeks = PurchaseHistory(2, 30.43, 38.86, 0.0)
    in_days = PurchaseHistory(2, 30.43 * 7, 38.86 * 7, 0.0)
    assert expected_purchases(CDNOW_WEEKS, in_weeks, 39) == pytest.approx(1.226, abs=5e-4)
    assert expected_purchases(CDNOW_DAYS, in_days, 39 * 7) == pytest.approx(
        expected_purchases(CDNOW_WEEKS, in_weeks, 39), rel=1e-9
    )


def test_p_alive_is_one_without_a_repeat_purchase_and_falls_with_silence() -> None:
    assert p_alive(CDNOW_DAYS, PurchaseHistory(0, 0.0, 300.0, 0.0)) == 1.0
    recent = p_alive(CDNOW_DAYS, PurchaseHistory(3, 290.0, 300.0, 20.0))
    silent = p_alive(CDNOW_DAYS, PurchaseHistory(3, 50.0, 300.0, 20.0))
    assert 0.0 < silent < recent < 1.0


def test_churn_risk_of_a_one_time_buyer_is_below_one_and_rises_with_time() -> None:
    risks = [
        churn_risk(CDNOW_DAYS, PurchaseHistory(0, 0.0, age, 0.0), horizon_days=90)
        for age in (1.0, 30.0, 180.0, 720.0)
    ]
    assert all(0.0 < risk < 1.0 for risk in risks)
    assert risks == sorted(risks) and len(set(risks)) == len(risks)


def test_churn_risk_is_higher_after_a_long_silence_and_lower_over_a_longer_horizon() -> None:
    silent = PurchaseHistory(4, 60.0, 360.0, 20.0)
    recent = PurchaseHistory(4, 350.0, 360.0, 20.0)
    assert churn_risk(CDNOW_DAYS, silent, 90) > churn_risk(CDNOW_DAYS, recent, 90)
    assert churn_risk(CDNOW_DAYS, recent, 365) < churn_risk(CDNOW_DAYS, recent, 30)


def test_predictions_match_a_simulated_future() -> None:
    """Grouped by past repeat purchases, the mean expected purchases and the mean churn risk
    must be the mean holdout purchases and the share without one, within 4 standard errors."""
    rng = np.random.default_rng(3)
    simulated = simulate(CDNOW_DAYS, rng.uniform(0, 364, 100_000), 90.0, rng)
    histories, holdout = simulated.histories, simulated.holdout_purchases
    scores = score_many(CDNOW_DAYS, CDNOW_SPEND, histories, horizon_days=90)
    quiet = (holdout == 0).astype(np.float64)
    for repeats in range(4):
        group = histories.frequency == repeats
        for predicted, actual in (
            (scores.expected_purchases_90d[group], holdout[group]),
            (scores.churn_risk[group], quiet[group]),
        ):
            standard_error = actual.std() / math.sqrt(actual.size)
            assert abs(predicted.mean() - actual.mean()) < 4 * standard_error


def test_expected_purchases_stay_finite_and_bounded_at_the_edges() -> None:
    frequent = PurchaseHistory(1000, 3000.0, 3000.0, 5.0)
    value = expected_purchases(CDNOW_DAYS, frequent, 365)
    # Nobody alive buys more than their posterior mean rate allows: (r + x) / (alpha + T) t.
    assert 0.0 < value <= (0.243 + 1000) / (30.898 + 3000) * 365
    # At a = 1 equation 10 divides zero by zero; the quadrature must sit between the neighbours.
    history = PurchaseHistory(2, 100.0, 200.0, 5.0)
    below, at, above = (
        expected_purchases(BgNbdParams(0.5, 20.0, a, 2.0), history, 90) for a in (0.999, 1, 1.001)
    )
    assert min(below, above) <= at <= max(below, above)
    assert expected_purchases(CDNOW_DAYS, history, 0) == 0.0


def test_expected_purchases_when_dropout_is_nearly_the_same_for_everyone() -> None:
    # A fit over few histories can end with a and b in the hundreds and thousands (only their
    # ratio is determined); B(a, b + x) then underflows, and the quadrature must not divide by it.
    params = BgNbdParams(r=0.5275, alpha=7.98, a=200.99, b=11353.0)
    history = PurchaseHistory(0, 0.0, 0.5, 0.0)
    dropout = params.a / (params.a + params.b)
    span = params.alpha + history.age
    # With p all but fixed at its mean, someone alive buys (1 - E[exp(-λ p t)]) / p times.
    at_mean = -math.expm1(-params.r * math.log1p(dropout * 365 / span)) / dropout
    assert expected_purchases(params, history, 365) == pytest.approx(at_mean, rel=1e-3)


def test_fit_recovers_planted_parameters() -> None:
    """20,000 customers observed over up to a year: the standard errors of log r, log alpha,
    log a, log b from the inverse Hessian are 0.020, 0.032, 0.092 and 0.114 (a and b are
    weakly identified, as in the paper); the tolerances are 3 of them."""
    rng = np.random.default_rng(11)
    histories = simulate(CDNOW_DAYS, rng.uniform(0, 364, 20_000), 0.0, rng).histories
    fitted = fit_bgnbd(histories)
    for name, tolerance in (("r", 0.06), ("alpha", 0.095), ("a", 0.28), ("b", 0.34)):
        error = math.log(getattr(fitted, name) / getattr(CDNOW_DAYS, name))
        assert abs(error) < tolerance, (name, fitted)


def test_fit_refuses_too_few_histories_and_no_repeat_purchase() -> None:
    few = [PurchaseHistory(1, 5.0, 10.0, 1.0)] * (MIN_HISTORIES - 1)
    with pytest.raises(ValueError, match=f"at least {MIN_HISTORIES}"):
        fit_bgnbd(few)
    with pytest.raises(ValueError, match="repeat purchase"):
        fit_bgnbd([PurchaseHistory(0, 0.0, float(day), 0.0) for day in range(100)])


def test_gamma_gamma_recovers_planted_parameters() -> None:
    """20,000 repeat buyers: the standard errors of log p, log (q - 1), log v over 20 seeds are
    0.057, 0.023, 0.073 and 0.005 for the population mean; the tolerances are 3 of them or more."""
    rng = np.random.default_rng(5)
    n = 20_000
    x = rng.integers(1, 8, n).astype(np.float64)
    spend_rate = rng.gamma(CDNOW_SPEND.q, 1 / CDNOW_SPEND.v, n)
    # The sum of x Gamma(p, nu) values is Gamma(p x, nu).
    mean_value = rng.gamma(CDNOW_SPEND.p * x, 1 / spend_rate) / x
    fitted = fit_gamma_gamma(HistoryArrays(x, np.ones(n), np.ones(n), mean_value))
    assert not fitted.fallback
    assert abs(math.log(fitted.p / CDNOW_SPEND.p)) < 0.18
    assert abs(math.log((fitted.q - 1) / (CDNOW_SPEND.q - 1))) < 0.07
    assert abs(math.log(fitted.v / CDNOW_SPEND.v)) < 0.22
    assert abs(math.log(fitted.population_mean / CDNOW_SPEND.population_mean)) < 0.02


def test_gamma_gamma_falls_back_to_the_observed_mean_with_few_repeat_buyers() -> None:
    histories = [PurchaseHistory(2, 10.0, 20.0, 30.0), PurchaseHistory(1, 5.0, 20.0, 60.0)]
    histories += [PurchaseHistory(0, 0.0, 20.0, 0.0)] * 50
    fitted = fit_gamma_gamma(histories)
    assert fitted.fallback
    # Two purchases at 30 and one at 60: 40 a purchase.
    assert fitted.population_mean == pytest.approx(40.0)
    assert expected_average_value(fitted, histories[0]) == pytest.approx(40.0)


def test_expected_average_value_shrinks_toward_the_population_mean() -> None:
    population = CDNOW_SPEND.population_mean
    assert expected_average_value(CDNOW_SPEND, PurchaseHistory(0, 0.0, 9.0, 0.0)) == (
        pytest.approx(population)
    )
    one = expected_average_value(CDNOW_SPEND, PurchaseHistory(1, 5.0, 9.0, 100.0))
    many = expected_average_value(CDNOW_SPEND, PurchaseHistory(50, 5.0, 9.0, 100.0))
    assert population < one < many < 100.0


def test_auc_of_perfect_reversed_tied_and_mixed_rankings() -> None:
    labels = [False, False, True, True]
    assert auc([0.1, 0.2, 0.8, 0.9], labels) == 1.0
    assert auc([0.9, 0.8, 0.2, 0.1], labels) == 0.0
    assert auc([0.5, 0.5, 0.5, 0.5], labels) == 0.5
    # Pairs (positive, negative): 0.35 > 0.1, 0.35 < 0.4, 0.8 > both: 3 of 4.
    assert auc([0.1, 0.4, 0.35, 0.8], labels) == 0.75
    # A tie between a positive and a negative counts half: (1 + 0.5) / 2.
    assert auc([0.1, 0.5, 0.5, 0.9], [False, False, True, True]) == pytest.approx(0.875)
    assert math.isnan(auc([0.1, 0.2], [True, True]))


def test_histories_count_a_day_once_and_ignore_what_comes_after_as_of() -> None:
    day = datetime(2025, 3, 1, tzinfo=UTC)
    purchases = {
        "p1": [
            (day + timedelta(hours=9), 10.0),
            (day + timedelta(days=4, hours=8), 20.0),
            (day + timedelta(days=4, hours=20), 5.0),
            (day + timedelta(days=10, hours=12), 40.0),
            (day + timedelta(days=30), 99.0),
        ],
        "p2": [(day + timedelta(days=30), 1.0)],
    }
    histories = histories_from_purchases(purchases, as_of=day + timedelta(days=20, hours=12))
    assert set(histories) == {"p1"}
    # Repeat days 4 (20 + 5) and 10 (40); counted from the first day's midnight.
    assert histories["p1"] == PurchaseHistory(2, 10.0, 20.5, 32.5)


def test_score_of_one_history_is_its_row_of_the_batch() -> None:
    histories = [PurchaseHistory(0, 0.0, 40.0, 0.0), PurchaseHistory(5, 200.0, 300.0, 25.0)]
    batch = score_many(CDNOW_DAYS, CDNOW_SPEND, histories, horizon_days=60)
    single = score(CDNOW_DAYS, CDNOW_SPEND, histories[1], horizon_days=60)
    assert single.churn_horizon_days == batch.churn_horizon_days == 60
    assert single.p_alive == batch.p_alive[1]
    assert single.churn_risk == churn_risk(CDNOW_DAYS, histories[1], 60)
    assert single.expected_purchases_30d == expected_purchases(CDNOW_DAYS, histories[1], 30)
    assert single.expected_value_365d == pytest.approx(
        single.expected_purchases_365d * expected_average_value(CDNOW_SPEND, histories[1])
    )


def test_backtest_counts_holdout_purchase_days_and_leaves_out_later_customers() -> None:
    rng = np.random.default_rng(8)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    cutoff = start + timedelta(days=200)
    simulated = simulate(CDNOW_DAYS, rng.uniform(0, 200, 400), 0.0, rng)
    purchases: dict[str, list[tuple[datetime, float]]] = {}
    for index, (x, t_x, age) in enumerate(
        zip(
            simulated.histories.frequency,
            simulated.histories.recency,
            simulated.histories.age,
            strict=True,
        )
    ):
        first = cutoff - timedelta(days=float(age))
        # The repeat purchases evenly up to t_x: the history's shape is all the fit sees.
        moments = [first + timedelta(days=float(t_x) * k / max(x, 1)) for k in range(int(x) + 1)]
        purchases[f"c{index}"] = [(moment, 10.0) for moment in moments]
    purchases["c0"].append((cutoff + timedelta(days=3), 10.0))
    purchases["c0"].append((cutoff + timedelta(days=3, hours=1), 10.0))
    purchases["c1"].append((cutoff + timedelta(days=89), 10.0))
    purchases["late"] = [(cutoff + timedelta(days=1), 10.0)]

    report = backtest(purchases, cutoff, horizon_days=90, with_outcomes=True)

    assert report.outcomes is not None
    actual = {outcome.profile_id: outcome.actual_purchases for outcome in report.outcomes}
    assert "late" not in actual and report.profiles == 400
    assert actual["c0"] == 1 and actual["c1"] == 1 and report.actual_total == 2
    assert [row.past_repeats for row in report.calibration] == list(range(CALIBRATION_TOP + 1))
    assert sum(row.profiles for row in report.calibration) == 400
    assert report.predicted_total == pytest.approx(
        sum(outcome.predicted_purchases for outcome in report.outcomes)
    )
    assert 0.0 <= report.churn_auc <= 1.0


def test_a_purchase_history_must_be_consistent() -> None:
    with pytest.raises(ValueError):
        PurchaseHistory(1, 20.0, 10.0, 5.0)
    with pytest.raises(ValueError):
        PurchaseHistory(0, 3.0, 10.0, 0.0)

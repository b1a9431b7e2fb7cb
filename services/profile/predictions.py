"""Predictive purchase scores: BG/NBD purchase counts and Gamma-Gamma spend per profile.

Pure functions, no I/O. Time is in days. A profile's purchase history is summarised as
(x, t_x, T, m): repeat purchases, days from the first purchase to the last, days from the first
purchase to the as-of moment, and the mean value of the repeat purchases. The BG/NBD model
(Fader, Hardie & Lee 2005) turns x, t_x and T into P(alive), expected purchases and churn risk;
the Gamma-Gamma model (Fader & Hardie 2013) turns x and m into an expected value per purchase.
Derivations, the fit and the failure modes are in docs/models/predictive-scores.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import integrate, optimize, special, stats  # type: ignore[import-untyped, unused-ignore]

FloatArray = NDArray[np.float64]
_Objective = Callable[[FloatArray], float]

DAY = timedelta(days=1)
# Below these counts the estimates are mostly noise: even a few thousand histories leave the
# dropout parameters a and b with standard errors of 20% (docs/models/predictive-scores.md).
MIN_HISTORIES = 20
MIN_REPEAT_BUYERS = 20
# The calibration table of a backtest has one row per number of past repeat purchases up to
# this one, which also holds everybody above it.
CALIBRATION_TOP = 7
DEFAULT_CHURN_HORIZON_DAYS = 90.0

# Log-parameters stay within e^-12..e^12 so that a degenerate sample (say, no dropout visible)
# ends at a bound instead of overflowing.
_LOG_BOUND = 12.0
# Equation 10 divides by (a - 1); this close to a = 1 the quotient is computed by quadrature.
_A_NEAR_ONE = 1e-7
# Below this log B(a, b + x) the quadrature's algebraic weight underflows near its peak (both
# shapes in the hundreds or more); the tails beyond _BETA_TAIL on either side are left out.
_LOG_BETA_FLOOR = -500.0
_BETA_TAIL = 1e-12


@dataclass(frozen=True, slots=True)
class PurchaseHistory:
    """One profile's purchases as the models see them (days; see the module docstring)."""

    frequency: int
    recency: float
    age: float
    monetary: float

    def __post_init__(self) -> None:
        if self.frequency < 0 or not 0.0 <= self.recency <= self.age:
            raise ValueError(f"not a purchase history: {self}")
        if self.frequency == 0 and self.recency != 0.0:
            raise ValueError(f"no repeat purchase, yet a recency: {self}")


@dataclass(frozen=True)
class HistoryArrays:
    """Many histories as columns, for fitting and scoring a whole workspace at once."""

    frequency: FloatArray
    recency: FloatArray
    age: FloatArray
    monetary: FloatArray

    @classmethod
    def of(cls, histories: Iterable[PurchaseHistory]) -> HistoryArrays:
        rows = np.array(
            [(h.frequency, h.recency, h.age, h.monetary) for h in histories], dtype=np.float64
        ).reshape(-1, 4)
        return cls(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3])

    def __len__(self) -> int:
        return int(self.frequency.size)


Histories = Sequence[PurchaseHistory] | HistoryArrays


def _arrays(histories: Histories) -> HistoryArrays:
    return histories if isinstance(histories, HistoryArrays) else HistoryArrays.of(histories)


# --- Histories from purchases -------------------------------------------------------------------


def histories_from_purchases(
    purchases: Mapping[str, Sequence[tuple[datetime, float]]], as_of: datetime
) -> dict[str, PurchaseHistory]:
    """Each profile's history from its (moment, value) purchases before `as_of`.

    Purchases on one calendar day (in `as_of`'s time zone) count as one purchase worth their
    sum: an order split into parcels, or paid in two goes, is one buying decision, and counting
    it twice would make its buyer look both more frequent and more likely to have left. A
    purchase day counts from its midnight, so t_x is whole days and T runs to `as_of` itself.
    Profiles with no purchase before `as_of` are left out.
    """
    histories: dict[str, PurchaseHistory] = {}
    for profile_id, profile_purchases in purchases.items():
        days = _purchase_days(profile_purchases, None, as_of, as_of.tzinfo)
        if days:
            histories[profile_id] = _history(days, as_of)
    return histories


def _purchase_days(
    purchases: Iterable[tuple[datetime, float]],
    start: datetime | None,
    end: datetime,
    zone: tzinfo | None,
) -> dict[date, float]:
    """The value bought per calendar day over [start, end)."""
    days: dict[date, float] = {}
    for moment, value in purchases:
        if moment < end and (start is None or moment >= start):
            day = (moment.astimezone(zone) if zone is not None else moment).date()
            days[day] = days.get(day, 0.0) + value
    return days


def _history(days: Mapping[date, float], as_of: datetime) -> PurchaseHistory:
    ordered = sorted(days)
    first = ordered[0]
    first_midnight = datetime.combine(first, time(), tzinfo=as_of.tzinfo)
    repeat_values = [days[day] for day in ordered[1:]]
    return PurchaseHistory(
        frequency=len(repeat_values),
        recency=float((ordered[-1] - first).days),
        age=(as_of - first_midnight) / DAY,
        monetary=float(np.mean(repeat_values)) if repeat_values else 0.0,
    )


# --- BG/NBD -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BgNbdParams:
    """Purchase rates λ ~ Gamma(shape r, rate alpha) per day; dropout after a repeat purchase
    with probability p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float


def bgnbd_log_likelihood(params: BgNbdParams, histories: Histories) -> float:
    """The BG/NBD log-likelihood of the histories (Fader, Hardie & Lee 2005, eq. 6)."""
    columns = _arrays(histories)
    return float(
        np.sum(_bgnbd_log_likelihoods(params, columns.frequency, columns.recency, columns.age))
    )


def _bgnbd_log_likelihoods(
    params: BgNbdParams, x: FloatArray, t_x: FloatArray, age: FloatArray
) -> FloatArray:
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    rate_part = special.gammaln(r + x) - special.gammaln(r) + r * math.log(alpha)
    alive_at_end = special.betaln(a, b + x) - special.betaln(a, b) - (r + x) * np.log(alpha + age)
    # Only defined for x >= 1 (the customer dropped out right after the last purchase); x = 0
    # rows get a harmless stand-in argument and are masked below.
    dropped_after_last = (
        special.betaln(a + 1, b + np.maximum(x, 1) - 1)
        - special.betaln(a, b)
        - (r + x) * np.log(alpha + t_x)
    )
    either = np.where(x > 0, np.logaddexp(alive_at_end, dropped_after_last), alive_at_end)
    return np.asarray(rate_part + either, dtype=np.float64)


def fit_bgnbd(histories: Histories) -> BgNbdParams:
    """Maximum-likelihood BG/NBD parameters.

    Raises ValueError with fewer than MIN_HISTORIES histories or without a single repeat
    purchase (then nothing tells repeat buying from dropping out).
    """
    columns = _arrays(histories)
    if len(columns) < MIN_HISTORIES:
        raise ValueError(
            f"BG/NBD needs at least {MIN_HISTORIES} purchase histories, got {len(columns)}"
        )
    if not np.any(columns.frequency > 0):
        raise ValueError("BG/NBD needs at least one repeat purchase; every history has x = 0")
    # The likelihood only depends on (x, t_x, T): whole-day recencies repeat a lot, and each
    # distinct pattern is evaluated once, weighted by how many profiles share it.
    patterns, counts = np.unique(
        np.column_stack([columns.frequency, columns.recency, columns.age]),
        axis=0,
        return_counts=True,
    )
    x, t_x, age = patterns[:, 0], patterns[:, 1], patterns[:, 2]
    weights = counts / counts.sum()

    def negative_mean(log_params: FloatArray) -> float:
        params = BgNbdParams(*np.exp(log_params))
        return -float(np.dot(weights, _bgnbd_log_likelihoods(params, x, t_x, age)))

    solution = _minimise(negative_mean, _bgnbd_start(columns))
    return BgNbdParams(*(float(value) for value in np.exp(solution)))


def _bgnbd_start(columns: HistoryArrays) -> FloatArray:
    """Log of r = 1 with the observed mean purchase rate, and a = 1, b = 3 (a quarter of
    customers leaving at each repeat purchase): from here the optimiser reached the maximum
    (checked against Nelder-Mead restarts) on every simulated population tried."""
    rate = max(float(columns.frequency.sum() / max(columns.age.sum(), 1.0)), 1e-4)
    return np.log(np.array([1.0, 1.0 / rate, 1.0, 3.0], dtype=np.float64))


def _minimise(objective: _Objective, start: FloatArray) -> FloatArray:
    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * start.size
    result = optimize.minimize(objective, start, method="L-BFGS-B", bounds=bounds)
    if not np.isfinite(result.fun):
        raise ValueError(f"the likelihood could not be evaluated at the optimum: {result.message}")
    return np.asarray(result.x, dtype=np.float64)


def p_alive(params: BgNbdParams, history: PurchaseHistory) -> float:
    """P(the profile has not dropped out by T); 1 without a repeat purchase, since under the
    BG/NBD dropout happens only right after a repeat purchase."""
    return float(_p_alive(params, HistoryArrays.of([history]))[0])


def _p_alive(params: BgNbdParams, columns: HistoryArrays) -> FloatArray:
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x = columns.frequency
    log_odds_dropped = (
        math.log(a)
        - np.log(b + np.maximum(x, 1) - 1)
        + (r + x) * (np.log(alpha + columns.age) - np.log(alpha + columns.recency))
    )
    return np.asarray(np.where(x > 0, special.expit(-log_odds_dropped), 1.0), dtype=np.float64)


def expected_purchases(params: BgNbdParams, history: PurchaseHistory, days: float) -> float:
    """E[purchases in (T, T + days] | history] (Fader, Hardie & Lee 2005, eq. 10)."""
    return float(_expected_purchases(params, HistoryArrays.of([history]), days)[0])


def _expected_purchases(params: BgNbdParams, columns: HistoryArrays, days: float) -> FloatArray:
    """Eq. 10 as P(alive) times the purchases expected of someone alive, whose rate is
    Gamma(r + x, alpha + T) and dropout Beta(a, b + x) a posteriori.

    The hypergeometric term is taken through Euler's transformation,
    2F1(r+x, b+x; c; z) (1-z)^(r+x) = 2F1(a+b-1-r, a-1; c; z) (1-z)^(a-1), c = a+b+x-1: the
    left side multiplies a huge function by a tiny power for a frequent buyer, the right side's
    upper parameters do not grow with x. Rows where the closed form still fails (near a = 1, or
    a pole at c <= 0) are integrated over the dropout probability instead.
    """
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x, age = columns.frequency, columns.age
    if days <= 0:
        return np.zeros_like(x)
    # If alive, the expected count is below E[λ] t: dropping out can only lower it.
    ceiling = (r + x) * days / (alpha + age)
    if abs(a - 1.0) < _A_NEAR_ONE:
        if_alive = np.full_like(x, np.nan)
    else:
        z = days / (alpha + age + days)
        c = a + b + x - 1
        # A pole (c = 0) gives inf or NaN here, and those rows go to the quadrature below.
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            remaining = (1 - z) ** (a - 1) * special.hyp2f1(a + b - 1 - r, a - 1, c, z)
            if_alive = c / (a - 1) * (1 - remaining)
    failed = ~np.isfinite(if_alive) | (if_alive < 0) | (if_alive > ceiling * (1 + 1e-9))
    for row in np.flatnonzero(failed):
        if_alive[row] = _expected_if_alive_by_quadrature(params, x[row], age[row], days)
    alive = _p_alive(params, columns)
    return np.asarray(alive * np.clip(if_alive, 0.0, ceiling), dtype=np.float64)


def _expected_if_alive_by_quadrature(
    params: BgNbdParams, x: float, age: float, days: float
) -> float:
    """∫ (1 - E[exp(-λ p t)]) / p  dBeta(p; a, b + x): someone alive with rate λ and dropout p
    buys (1 - exp(-λ p t)) / p times in t days on average."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    span = alpha + age

    def per_dropout(p: float) -> float:
        if p <= 0.0:
            return (r + x) * days / span
        return -math.expm1(-(r + x) * math.log1p(p * days / span)) / p

    log_normaliser = float(special.betaln(a, b + x))
    if log_normaliser < _LOG_BETA_FLOOR:
        return _mean_over_peaked_beta(per_dropout, a, b + x, log_normaliser)
    # QUADPACK's algebraic weight p^(a-1) (1-p)^(b+x-1) handles the endpoint singularities.
    kernel_integral, _ = integrate.quad(
        per_dropout, 0.0, 1.0, weight="alg", wvar=(a - 1, b + x - 1)
    )
    return float(kernel_integral) / math.exp(log_normaliser)


def _mean_over_peaked_beta(
    function: Callable[[float], float], a: float, b: float, log_normaliser: float
) -> float:
    """E[function(p)] for p ~ Beta(a, b) with both shapes large (a fit whose dropout is nearly
    the same for everyone). The algebraic weight underflows to zero there, but the density is
    bounded and sharply peaked: it is taken in log space, over where its mass is."""
    dropout = stats.beta(a, b)
    low, high = float(dropout.ppf(_BETA_TAIL)), float(dropout.isf(_BETA_TAIL))

    def weighted(p: float) -> float:
        log_density = (a - 1) * math.log(p) + (b - 1) * math.log1p(-p) - log_normaliser
        return function(p) * math.exp(log_density)

    value, _ = integrate.quad(weighted, low, high, limit=200)
    return float(value)


def churn_risk(params: BgNbdParams, history: PurchaseHistory, horizon_days: float) -> float:
    """P(no purchase in (T, T + horizon] | history).

    Dropped out: certainly none. Alive: dropout only follows a purchase, so none with
    probability exp(-λ H), whose mean over λ ~ Gamma(r + x, alpha + T) is
    ((alpha + T) / (alpha + T + H))^(r + x).
    """
    return float(_churn_risk(params, HistoryArrays.of([history]), horizon_days)[0])


def _churn_risk(params: BgNbdParams, columns: HistoryArrays, horizon_days: float) -> FloatArray:
    shape = params.r + columns.frequency
    span = params.alpha + columns.age
    quiet_if_alive = np.exp(-shape * np.log1p(horizon_days / span))
    return np.asarray(1.0 - _p_alive(params, columns) * (1.0 - quiet_if_alive), dtype=np.float64)


# --- Gamma-Gamma --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GammaGammaParams:
    """Purchase values z ~ Gamma(shape p, rate nu), each profile's nu ~ Gamma(shape q, rate v)
    (v is the paper's gamma).

    `fallback_mean` is set when there were too few repeat buyers to fit: p, q and v are then
    NaN and every profile's expected value per purchase is that observed mean.
    """

    p: float
    q: float
    v: float
    fallback_mean: float | None = None

    @property
    def fallback(self) -> bool:
        return self.fallback_mean is not None

    @property
    def population_mean(self) -> float:
        """The mean value per purchase of a profile drawn at random: p v / (q - 1)."""
        if self.fallback_mean is not None:
            return self.fallback_mean
        return self.p * self.v / (self.q - 1)


def fit_gamma_gamma(histories: Histories) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma parameters from profiles with x >= 1 and a positive mean.

    Fewer than MIN_REPEAT_BUYERS such profiles: the observed mean value of their repeat
    purchases, flagged as a fallback. q is kept above 1 so that the population mean exists.
    """
    columns = _arrays(histories)
    buyers = (columns.frequency > 0) & (columns.monetary > 0)
    x, mean_value = columns.frequency[buyers], columns.monetary[buyers]
    if x.size < MIN_REPEAT_BUYERS:
        spent = float(np.dot(x, mean_value))
        return GammaGammaParams(
            math.nan, math.nan, math.nan, fallback_mean=spent / x.sum() if x.size else 0.0
        )

    def negative_mean(log_params: FloatArray) -> float:
        p, q_above_one, v = np.exp(log_params)
        return -float(np.mean(_gamma_gamma_log_likelihoods(p, 1 + q_above_one, v, x, mean_value)))

    # Start at p = 1, q = 2 and the v that gives the observed mean value.
    start = np.log(np.array([1.0, 1.0, float(np.mean(mean_value))]))
    p, q_above_one, v = np.exp(_minimise(negative_mean, start))
    return GammaGammaParams(float(p), float(1 + q_above_one), float(v))


def gamma_gamma_log_likelihood(params: GammaGammaParams, histories: Histories) -> float:
    """The Gamma-Gamma log-likelihood of the repeat buyers' mean values (Fader & Hardie 2013)."""
    columns = _arrays(histories)
    buyers = (columns.frequency > 0) & (columns.monetary > 0)
    return float(
        np.sum(
            _gamma_gamma_log_likelihoods(
                params.p,
                params.q,
                params.v,
                columns.frequency[buyers],
                columns.monetary[buyers],
            )
        )
    )


def _gamma_gamma_log_likelihoods(
    p: float, q: float, v: float, x: FloatArray, mean_value: FloatArray
) -> FloatArray:
    px = p * x
    return np.asarray(
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * math.log(v)
        + (px - 1) * np.log(mean_value)
        + px * np.log(x)
        - (px + q) * np.log(v + x * mean_value),
        dtype=np.float64,
    )


def expected_average_value(params: GammaGammaParams, history: PurchaseHistory) -> float:
    """E[value per purchase | x, m]: the observed mean shrunk toward the population mean, the
    more the fewer purchases it rests on (Fader & Hardie 2013)."""
    return float(_expected_average_value(params, HistoryArrays.of([history]))[0])


def _expected_average_value(params: GammaGammaParams, columns: HistoryArrays) -> FloatArray:
    if params.fallback_mean is not None:
        return np.full_like(columns.frequency, params.fallback_mean)
    x, mean_value = columns.frequency, columns.monetary
    # At x = 0 this is p v / (q - 1), the population mean.
    return np.asarray(
        params.p * (params.v + x * mean_value) / (params.p * x + params.q - 1), dtype=np.float64
    )


# --- Scores -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scores:
    """One profile's predictive scores; `churn_risk` is over `churn_horizon_days`."""

    p_alive: float
    expected_purchases_30d: float
    expected_purchases_90d: float
    expected_purchases_365d: float
    expected_value_365d: float
    churn_risk: float
    churn_horizon_days: float


@dataclass(frozen=True)
class ScoreArrays:
    """The scores of many profiles, one array per score, in the order of the histories."""

    p_alive: FloatArray
    expected_purchases_30d: FloatArray
    expected_purchases_90d: FloatArray
    expected_purchases_365d: FloatArray
    expected_value_365d: FloatArray
    churn_risk: FloatArray
    churn_horizon_days: float


def score(
    params_bgnbd: BgNbdParams,
    params_gg: GammaGammaParams,
    history: PurchaseHistory,
    horizon_days: float = DEFAULT_CHURN_HORIZON_DAYS,
) -> Scores:
    many = score_many(params_bgnbd, params_gg, HistoryArrays.of([history]), horizon_days)
    return Scores(
        p_alive=float(many.p_alive[0]),
        expected_purchases_30d=float(many.expected_purchases_30d[0]),
        expected_purchases_90d=float(many.expected_purchases_90d[0]),
        expected_purchases_365d=float(many.expected_purchases_365d[0]),
        expected_value_365d=float(many.expected_value_365d[0]),
        churn_risk=float(many.churn_risk[0]),
        churn_horizon_days=horizon_days,
    )


def score_many(
    params_bgnbd: BgNbdParams,
    params_gg: GammaGammaParams,
    histories: Histories,
    horizon_days: float = DEFAULT_CHURN_HORIZON_DAYS,
) -> ScoreArrays:
    """Every profile's scores at once (a million profiles take seconds, not minutes)."""
    columns = _arrays(histories)
    purchases_365d = _expected_purchases(params_bgnbd, columns, 365.0)
    return ScoreArrays(
        p_alive=_p_alive(params_bgnbd, columns),
        expected_purchases_30d=_expected_purchases(params_bgnbd, columns, 30.0),
        expected_purchases_90d=_expected_purchases(params_bgnbd, columns, 90.0),
        expected_purchases_365d=purchases_365d,
        expected_value_365d=purchases_365d * _expected_average_value(params_gg, columns),
        churn_risk=_churn_risk(params_bgnbd, columns, horizon_days),
        churn_horizon_days=horizon_days,
    )


# --- Backtesting --------------------------------------------------------------------------------


def auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """P(a random positive scores above a random negative), ties counted half (Mann-Whitney U
    over average ranks). NaN when the labels hold one class only."""
    values = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(labels, dtype=bool)
    if values.shape != positive.shape:
        raise ValueError(f"{values.shape} scores for {positive.shape} labels")
    positives = int(positive.sum())
    negatives = positive.size - positives
    if positives == 0 or negatives == 0:
        return math.nan
    ranks = stats.rankdata(values)
    u = float(ranks[positive].sum()) - positives * (positives + 1) / 2
    return u / (positives * negatives)


@dataclass(frozen=True)
class CalibrationRow:
    """Profiles with `past_repeats` repeat purchases before the cutoff (CALIBRATION_TOP: that
    many or more): how many, and their mean predicted and actual purchases in the horizon."""

    past_repeats: int
    profiles: int
    mean_predicted: float
    mean_actual: float


@dataclass(frozen=True)
class ProfileOutcome:
    profile_id: str
    history: PurchaseHistory
    predicted_purchases: float
    actual_purchases: int
    churn_risk: float


@dataclass(frozen=True)
class BacktestReport:
    """A fit on the purchases before a cutoff, judged on the purchase days in the horizon after.

    `churn_auc` scores churn_risk against "no purchase in the horizon".
    """

    params: BgNbdParams
    profiles: int
    horizon_days: float
    correlation: float
    predicted_total: float
    actual_total: int
    churn_auc: float
    calibration: tuple[CalibrationRow, ...]
    outcomes: tuple[ProfileOutcome, ...] | None = None


def backtest(
    purchases: Mapping[str, Sequence[tuple[datetime, float]]],
    cutoff: datetime,
    horizon_days: float,
    *,
    with_outcomes: bool = False,
) -> BacktestReport:
    """Fit on purchases before `cutoff` (profiles whose first purchase is before it), predict
    the purchase days in [cutoff, cutoff + horizon), and compare with what happened."""
    histories = histories_from_purchases(purchases, cutoff)
    profile_ids = list(histories)
    columns = HistoryArrays.of(histories.values())
    params = fit_bgnbd(columns)
    predicted = _expected_purchases(params, columns, horizon_days)
    risk = _churn_risk(params, columns, horizon_days)
    actual = np.array(
        [_purchase_days_after(purchases[pid], cutoff, horizon_days) for pid in profile_ids],
        dtype=np.float64,
    )
    outcomes = None
    if with_outcomes:
        outcomes = tuple(
            ProfileOutcome(pid, histories[pid], float(pred), int(act), float(rk))
            for pid, pred, act, rk in zip(profile_ids, predicted, actual, risk, strict=True)
        )
    return BacktestReport(
        params=params,
        profiles=len(profile_ids),
        horizon_days=horizon_days,
        correlation=_pearson(predicted, actual),
        predicted_total=float(predicted.sum()),
        actual_total=int(actual.sum()),
        churn_auc=auc(risk, actual == 0),
        calibration=_calibration(columns.frequency, predicted, actual),
        outcomes=outcomes,
    )


def _purchase_days_after(
    purchases: Sequence[tuple[datetime, float]], cutoff: datetime, horizon_days: float
) -> int:
    """Purchase days in [cutoff, cutoff + horizon), leaving out a day the history already
    counted (a cutoff in the middle of a day)."""
    zone = cutoff.tzinfo
    counted = _purchase_days(purchases, None, cutoff, zone)
    later = _purchase_days(purchases, cutoff, cutoff + horizon_days * DAY, zone)
    return len(later.keys() - counted.keys())


def _pearson(predicted: FloatArray, actual: FloatArray) -> float:
    """NaN when either side is constant (no correlation to speak of)."""
    if np.ptp(predicted) == 0 or np.ptp(actual) == 0:
        return math.nan
    return float(np.corrcoef(predicted, actual)[0, 1])


def _calibration(
    past_repeats: FloatArray, predicted: FloatArray, actual: FloatArray
) -> tuple[CalibrationRow, ...]:
    groups = np.minimum(past_repeats, CALIBRATION_TOP)
    rows = []
    for group in range(CALIBRATION_TOP + 1):
        members = groups == group
        count = int(members.sum())
        rows.append(
            CalibrationRow(
                past_repeats=group,
                profiles=count,
                mean_predicted=float(predicted[members].mean()) if count else math.nan,
                mean_actual=float(actual[members].mean()) if count else math.nan,
            )
        )
    return tuple(rows)

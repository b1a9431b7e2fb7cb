"""Send-time model: each person's engagement per send by local hour, shrunk toward the population.

Pure functions, no I/O. Counts are numpy arrays with the 24 local hours on the last axis: one
person is shape (24,), many people (n, 24). `sends[h]` counts messages sent at local hour h and
`opens[h]` how many of those sends were opened or clicked. Rates per send, not raw opens, because
history is skewed toward the hours people were sent at: counting raw opens only finds those hours
again. The model, its fitting and its failure modes are in docs/models/send-time.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize_scalar  # type: ignore[import-untyped, unused-ignore]
from scipy.special import betaln  # type: ignore[import-untyped, unused-ignore]

from services.dispatch.policy import profile_zone

HOURS = 24
EXPLORE_SHARE = 0.10
POPULATION_BANDWIDTH = 1.0
PERSON_BANDWIDTH = 2.0
STRENGTH_RANGE = (2.0, 500.0)
LEVEL_SHAPE_RANGE = (1.0, 100.0)
# An hour nobody was sent at takes the overall rate, as if it had this many sends at that rate.
CURVE_PSEUDO_SENDS = 20.0
# No prior mean goes above this, however engaged a person looks: a rate of 1 would be certain.
MAX_PRIOR_RATE = 0.9
# Past this, every local hour has occurred at least once, even over a 23-hour DST day.
_SEARCH_HORIZON = timedelta(hours=48)
_RATE_FLOOR = 1e-6

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class HourPrior:
    """What the population says before a person's own counts, fitted by `fit_prior`.

    `curve` (shape (24,)) is the population's engagement per send by hour, m_h. A person's level
    L (how much more or less than the population they engage, at any hour) has a Gamma prior of
    mean 1 and shape `level_shape`. A person's hour h then starts as Beta(k·μ, k·(1 - μ)) with
    μ = m_h·L and k = `strength`, the prior's weight in sends.
    """

    curve: FloatArray
    strength: float
    level_shape: float


@dataclass(frozen=True)
class HourChoice:
    """The local hour to send at, whether exploration picked it, and its probability under the
    policy (logged so that other policies can be evaluated offline on this history)."""

    hour: int
    explored: bool
    probability: float


@dataclass(frozen=True)
class HourChoices:
    """`HourChoice` for many people at once, one entry per row of the counts."""

    hours: IntArray
    explored: BoolArray
    probabilities: FloatArray


def smooth_hours(counts: ArrayLike, bandwidth: float) -> FloatArray:
    """Spread each hour's counts over its neighbours, circularly (23 and 0 are neighbours).

    The kernel is a wrapped Gaussian with standard deviation `bandwidth` hours, normalised so that
    totals are kept: smoothing moves evidence between hours, it never adds any. 0 is no smoothing.
    """
    return _hourly(counts, "counts") @ _kernel(bandwidth)


def population_curve(
    sends: ArrayLike, opens: ArrayLike, bandwidth: float = POPULATION_BANDWIDTH
) -> FloatArray:
    """Engagement per send by local hour over everyone pooled, smoothed across neighbouring hours.

    Hours with few sends lean on the overall rate (CURVE_PSEUDO_SENDS), so an hour nobody has been
    sent at yet gets a typical rate rather than zero or a division by zero.
    """
    sends_, opens_ = _counts(sends, opens)
    pooled_sends = smooth_hours(sends_.reshape(-1, HOURS).sum(axis=0), bandwidth)
    pooled_opens = smooth_hours(opens_.reshape(-1, HOURS).sum(axis=0), bandwidth)
    overall = (opens_.sum() + 1.0) / (sends_.sum() + 2.0)
    curve = (pooled_opens + CURVE_PSEUDO_SENDS * overall) / (pooled_sends + CURVE_PSEUDO_SENDS)
    clipped: FloatArray = np.clip(curve, _RATE_FLOOR, 1.0 - _RATE_FLOOR)
    return clipped


def fit_level_shape(
    sends: ArrayLike,
    opens: ArrayLike,
    curve: ArrayLike,
    shape_range: tuple[float, float] = LEVEL_SHAPE_RANGE,
) -> float:
    """The Gamma shape a of people's levels, by the method of moments over people.

    With E = Σ_h sends_h·m_h a person's opens expected at the population's curve, opens ≈
    Poisson(E·L) and L ~ Gamma(a, a) give E[(opens - E)²] = E + E²/a; summing over people gives
    1/a. Clipped to `shape_range`; no spread beyond Poisson noise is the top of the range.
    """
    sends_, opens_ = _counts(sends, opens)
    expected = sends_ @ np.asarray(curve, dtype=np.float64)
    observed = opens_.sum(axis=-1)
    low, high = shape_range
    excess = float(np.sum((observed - expected) ** 2 - expected))
    spread = float(np.sum(expected**2))
    if spread <= 0.0 or excess <= 0.0:
        return high
    return float(np.clip(spread / excess, low, high))


def person_levels(
    sends: ArrayLike,
    opens: ArrayLike,
    curve: ArrayLike,
    level_shape: float,
    *,
    leave_hour_out: bool = False,
) -> FloatArray:
    """How much more than the curve each person engages: (opens + a) / (expected opens + a).

    That is the Gamma-Poisson posterior mean, shape (..., 1); no sends at all is level 1. With
    `leave_hour_out`, shape (..., 24): for each hour, from the person's other hours only. The
    strength is fitted with those, because a level that already holds an hour's counts fits that
    hour too well and makes people look closer to their prior than they are.
    """
    sends_, opens_ = _counts(sends, opens)
    expected = sends_ * np.asarray(curve, dtype=np.float64)
    total_expected = expected.sum(axis=-1, keepdims=True)
    total_opens = opens_.sum(axis=-1, keepdims=True)
    levels: FloatArray
    if leave_hour_out:
        levels = (total_opens - opens_ + level_shape) / (total_expected - expected + level_shape)
    else:
        levels = (total_opens + level_shape) / (total_expected + level_shape)
    return levels


def fit_strength(
    sends: ArrayLike,
    opens: ArrayLike,
    mean: ArrayLike,
    strength_range: tuple[float, float] = STRENGTH_RANGE,
) -> float:
    """The prior strength k that maximises the Beta-Binomial marginal likelihood of the counts.

    Each cell (a person's hour, or a person's channel) is taken as opens ~ Binomial(sends, p) with
    p ~ Beta(k·mean, k·(1 - mean)); `mean` broadcasts against the counts. Cells are treated as
    independent given their means. The answer is clipped to `strength_range`; with no sends at
    all it is the lower end.
    """
    sends_ = np.asarray(sends, dtype=np.float64)
    opens_ = np.asarray(opens, dtype=np.float64)
    if sends_.shape != opens_.shape:
        raise ValueError("sends and opens must have the same shape")
    low, high = strength_range
    if not 0 < low <= high:
        raise ValueError("strength_range must be positive and ordered")
    observed = sends_ > 0
    if not observed.any() or low == high:
        return low
    means = np.broadcast_to(np.asarray(mean, dtype=np.float64), sends_.shape)[observed]
    m = np.clip(means, _RATE_FLOOR, 1.0 - _RATE_FLOOR)
    n, hits = sends_[observed], opens_[observed]

    def negative_log_likelihood(log_strength: float) -> float:
        strength = np.exp(log_strength)
        a, b = strength * m, strength * (1.0 - m)
        return -float(np.sum(betaln(a + hits, b + n - hits) - betaln(a, b)))

    # A strength known to within 1 % is as good as exact here, and takes a third of the steps.
    result = minimize_scalar(
        negative_log_likelihood,
        bounds=(np.log(low), np.log(high)),
        method="bounded",
        options={"xatol": 0.01},
    )
    return float(np.clip(np.exp(result.x), low, high))


def fit_prior(
    sends: ArrayLike,
    opens: ArrayLike,
    untargeted_sends: ArrayLike,
    untargeted_opens: ArrayLike,
    *,
    bandwidth: float = POPULATION_BANDWIDTH,
    strength_range: tuple[float, float] = STRENGTH_RANGE,
) -> HourPrior:
    """The empirical-Bayes prior: the curve, then people's levels, then the strength.

    `sends` and `opens` are everyone's counts, shape (n, 24). The curve comes from the untargeted
    ones only, pooled by hour: sends whose hour did not depend on the person (a campaign's fixed
    hour, this model's exploration). Sends this model targeted went to the people who engage at
    that hour, so their pooled rate would flatter that hour, the curve would follow, and more
    people would be sent there: a loop that drifts away from the truth.

    The strength is fitted on each person's own (unsmoothed) counts around their prior means, so
    it measures how far a person's hours really stray from the population's curve at their level.
    """
    sends_, opens_ = _counts(sends, opens)
    curve = population_curve(untargeted_sends, untargeted_opens, bandwidth)
    level_shape = fit_level_shape(sends_, opens_, curve)
    levels = person_levels(sends_, opens_, curve, level_shape, leave_hour_out=True)
    strength = fit_strength(sends_, opens_, _prior_means(curve, levels), strength_range)
    return HourPrior(curve, strength, level_shape)


def posterior(
    sends: ArrayLike, opens: ArrayLike, prior: HourPrior, *, bandwidth: float = PERSON_BANDWIDTH
) -> tuple[FloatArray, FloatArray]:
    """Beta(alpha, beta) per person and hour: the prior at the person's level plus their counts.

    The person's counts are smoothed across neighbouring hours first, so opens at 19 and 21 also
    speak for 20; the kernel keeps totals, so the posterior holds no more evidence than was seen.
    """
    sends_, opens_ = _counts(sends, opens)
    levels = person_levels(sends_, opens_, prior.curve, prior.level_shape)
    means = _prior_means(prior.curve, levels)
    smoothed_sends = smooth_hours(sends_, bandwidth)
    smoothed_opens = smooth_hours(opens_, bandwidth)
    alpha = prior.strength * means + smoothed_opens
    beta = prior.strength * (1.0 - means) + smoothed_sends - smoothed_opens
    return alpha, beta


def posterior_means(
    sends: ArrayLike, opens: ArrayLike, prior: HourPrior, *, bandwidth: float = PERSON_BANDWIDTH
) -> FloatArray:
    """Expected engagement per send by hour, per person: the scores hours are ranked by."""
    alpha, beta = posterior(sends, opens, prior, bandwidth=bandwidth)
    return alpha / (alpha + beta)


def choose_hours(
    sends: ArrayLike,
    opens: ArrayLike,
    prior: HourPrior,
    rng: np.random.Generator,
    *,
    explore_share: float = EXPLORE_SHARE,
    bandwidth: float = PERSON_BANDWIDTH,
) -> HourChoices:
    """The send hour for each of n people (counts shape (n, 24)).

    Each person gets the hour with the highest posterior mean, except that with probability
    `explore_share` the hour is drawn uniformly. Uniform rather than Thompson exploration: the
    probability of every hour is then known exactly (no Monte-Carlo estimate to log) and never
    zero, which offline evaluation of another policy on this history needs, and it spreads sends
    over exactly the hours the skewed history never tried.
    """
    if not 0.0 <= explore_share <= 1.0:
        raise ValueError("explore_share must be within [0, 1]")
    means = np.atleast_2d(posterior_means(sends, opens, prior, bandwidth=bandwidth))
    best = np.argmax(means, axis=-1)
    people = best.shape[0]
    explored = rng.random(people) < explore_share
    hours = np.where(explored, rng.integers(0, HOURS, size=people), best)
    probabilities = explore_share / HOURS + (1.0 - explore_share) * (hours == best)
    return HourChoices(hours.astype(np.int64), explored, probabilities.astype(np.float64))


def best_hour(
    sends: ArrayLike,
    opens: ArrayLike,
    prior: HourPrior,
    rng: np.random.Generator,
    *,
    explore_share: float = EXPLORE_SHARE,
    bandwidth: float = PERSON_BANDWIDTH,
) -> HourChoice:
    """The send hour for one person (counts shape (24,)); see `choose_hours`."""
    sends_, opens_ = _counts(sends, opens)
    if sends_.shape != (HOURS,):
        raise ValueError("one person's counts must have shape (24,)")
    choices = choose_hours(
        sends_, opens_, prior, rng, explore_share=explore_share, bandwidth=bandwidth
    )
    return HourChoice(
        int(choices.hours[0]), bool(choices.explored[0]), float(choices.probabilities[0])
    )


def best_time_within(
    now: datetime, zone_name: str | None, within: timedelta, hour_scores: ArrayLike
) -> datetime:
    """When, in UTC, to send so that it lands in the person's best local hour before now + within.

    Walks the local hours that start or are under way in [now, now + within) and takes the one
    with the highest score (e.g. `posterior_means`, or 24 - rank), the earliest on a tie. An hour
    already under way means now. DST comes from zoneinfo: an hour skipped in spring does not occur,
    and an hour repeated in autumn is taken at its first occurrence. An unknown or missing zone
    is UTC, as for quiet hours.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if within <= timedelta(0):
        raise ValueError("within must be positive")
    scores = _hourly(hour_scores, "hour_scores")
    if scores.shape != (HOURS,):
        raise ValueError("hour_scores must have shape (24,)")
    zone = profile_zone(zone_name)
    # UTC steps of one hour from the top of the local hour keep landing on local hour starts,
    # including in half-hour-offset zones, and pass over DST changes correctly.
    slot = now.astimezone(zone).replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    end = min(now + within, slot + _SEARCH_HORIZON)
    best_at, best_score = now, -np.inf
    while slot < end:
        score = scores[slot.astimezone(zone).hour]
        if score > best_score:
            best_at, best_score = max(slot, now), score
        slot += timedelta(hours=1)
    return best_at.astimezone(UTC)


def _prior_means(curve: FloatArray, levels: FloatArray) -> FloatArray:
    means: FloatArray = np.clip(levels * curve, _RATE_FLOOR, MAX_PRIOR_RATE)
    return means


@cache
def _kernel(bandwidth: float) -> FloatArray:
    """The circulant matrix K with (counts @ K)[h] = Σ_j counts[j]·w(h - j), w summing to 1."""
    if not 0.0 <= bandwidth <= HOURS / 4:
        raise ValueError("bandwidth must be within [0, 6] hours")
    if bandwidth == 0.0:
        return np.eye(HOURS)
    hours = np.arange(HOURS)
    offsets = np.abs(hours[:, None] - hours[None, :])
    distances = np.minimum(offsets, HOURS - offsets)
    weights = np.exp(-0.5 * (distances / bandwidth) ** 2)
    kernel: FloatArray = weights / weights.sum(axis=0, keepdims=True)
    kernel.setflags(write=False)
    return kernel


def _hourly(values: ArrayLike, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0 or array.shape[-1] != HOURS:
        raise ValueError(f"{name} must have the 24 hours on the last axis")
    return array


def _counts(sends: ArrayLike, opens: ArrayLike) -> tuple[FloatArray, FloatArray]:
    sends_, opens_ = _hourly(sends, "sends"), _hourly(opens, "opens")
    if sends_.shape != opens_.shape:
        raise ValueError("sends and opens must have the same shape")
    if (sends_ < 0).any() or (opens_ < 0).any() or (opens_ > sends_).any():
        raise ValueError("counts must satisfy 0 <= opens <= sends")
    return sends_, opens_

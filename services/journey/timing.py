"""Send-time model: each person's engagement per send by local hour, shrunk toward the population.

Pure functions, no I/O. Counts are numpy arrays with the 24 local hours on the last axis: one
person is shape (24,), many people (n, 24). `sends[h]` counts messages sent at local hour h and
`opens[h]` how many of those sends were opened or clicked. Rates per send, not raw opens, because
history is skewed toward the hours people were sent at: counting raw opens only finds those hours
again. The prior is a mixture of a few daily profiles (morning, lunch, evening people...) fitted
by EM; a person's hours are shrunk toward the profiles their counts make likely. The model, its
fitting, the designs measured against it and its failure modes are in docs/models/send-time.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize_scalar  # type: ignore[import-untyped, unused-ignore]
from scipy.special import betaln  # type: ignore[import-untyped, unused-ignore]

from libs.common.contact_policy import profile_zone

HOURS = 24
EXPLORE_SHARE = 0.05
POPULATION_BANDWIDTH = 1.0
PERSON_BANDWIDTH = 2.0
STRENGTH_RANGE = (2.0, 500.0)
LEVEL_SHAPE_RANGE = (1.0, 100.0)
# An hour nobody was sent at takes the overall rate, as if it had this many sends at that rate.
CURVE_PSEUDO_SENDS = 20.0
# No prior mean goes above this, however engaged a person looks: a rate of 1 would be certain.
MAX_PRIOR_RATE = 0.9
# The mixture prior: this many daily profiles to start EM from, peaks spread evenly over the day.
# Profiles nobody fits end up close to another one and only split its weight, so a few too many
# cost little (3 to 12 measured alike); too few merge morning and lunch people.
PROFILES = 6
# Profiles are smoothed less than the one population curve was: a mixture's curves have peaks,
# and 1 h blurred them (0.5 h: +9 % opens vs the best fixed hour, 1 h: +6 %; docs/models).
PROFILE_BANDWIDTH = 0.5
# A profile's hour with few sends leans on the population curve, as if it had this many sends.
PROFILE_PSEUDO_SENDS = 50.0
# Starting shapes: the population curve times (1 + lift) at a peak, this wide, at the centre.
_START_LIFT = 1.0
_START_WIDTH = 2.0
EM_ITERATIONS = 60
# EM stops when the log-likelihood gains less than this per person in one iteration.
_EM_TOLERANCE = 1e-5
# People per block where arrays are (people, profiles, hours): bounds the memory of big fits.
_BLOCK = 4096
# Past this, every local hour has occurred at least once, even over a 23-hour DST day.
_SEARCH_HORIZON = timedelta(hours=48)
_RATE_FLOOR = 1e-6

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class HourPrior:
    """What the population says before a person's own counts, fitted by `fit_prior`.

    `curve` (shape (24,)) is the population's engagement per send by hour from untargeted sends.
    `profiles` (shape (K, 24)) are the daily profiles m_c of the mixture and `weights` (K,) their
    shares of people; without them (None) the curve is the only profile. A person belongs to one
    profile c, unknown; their level L (how much more or less than the profile they engage, at any
    hour) has a Gamma prior of mean 1 and shape `level_shape`. Given their counts, a person's
    hour h starts as Beta(k·μ, k·(1 - μ)) with μ = Σ_c P(c | counts)·E[L | c, counts]·m_ch and
    k = `strength`, the prior's weight in sends.
    """

    curve: FloatArray
    strength: float
    level_shape: float
    profiles: FloatArray | None = None
    weights: FloatArray | None = None

    def daily_profiles(self) -> tuple[FloatArray, FloatArray]:
        """The profiles (K, 24) and their weights (K,); the curve alone when there is no mixture."""
        if self.profiles is None or self.weights is None:
            return self.curve[None, :], np.ones(1)
        return self.profiles, self.weights


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


def profile_posteriors(
    sends: ArrayLike, opens: ArrayLike, prior: HourPrior
) -> tuple[FloatArray, FloatArray]:
    """Per person, P(profile c | counts) and E[level | c, counts], both shape (n, K).

    Opens are taken as Poisson(sends_h·L·m_ch) with L ~ Gamma(a, a): integrating L out, the
    counts' likelihood under profile c is, up to a factor that is the same for every profile,
    Π_h m_ch^opens_h · (E_c + a)^-(O + a), with O the person's opens and E_c = Σ_h sends_h·m_ch.
    The level's posterior mean is (O + a) / (E_c + a) [McLachlan & Peel 2000, ch. 2; Clayton &
    Kaldor 1987]. Poisson for Binomial: rates per send are small, and it keeps L integrable.
    """
    sends_, opens_ = _counts(sends, opens)
    profiles, weights = prior.daily_profiles()
    people_sends, people_opens = sends_.reshape(-1, HOURS), opens_.reshape(-1, HOURS)
    expected = people_sends @ profiles.T
    total = people_opens.sum(axis=-1, keepdims=True)
    shape = prior.level_shape
    log_likelihood = people_opens @ np.log(profiles).T - (total + shape) * np.log(expected + shape)
    responsibilities = _softmax(log_likelihood + np.log(weights), axis=-1)
    levels: FloatArray = (total + shape) / (expected + shape)
    leading = (*sends_.shape[:-1], weights.size)
    return responsibilities.reshape(leading), levels.reshape(leading)


def person_prior_means(sends: ArrayLike, opens: ArrayLike, prior: HourPrior) -> FloatArray:
    """Each person's prior mean by hour before their own hour-by-hour evidence: the profiles
    weighted by how likely the person's counts make each one, at the person's level in each."""
    responsibilities, levels = profile_posteriors(sends, opens, prior)
    profiles, _ = prior.daily_profiles()
    means: FloatArray = np.clip((responsibilities * levels) @ profiles, _RATE_FLOOR, MAX_PRIOR_RATE)
    return means


def fit_profiles(
    sends: ArrayLike,
    opens: ArrayLike,
    curve: ArrayLike,
    level_shape: float,
    *,
    profiles: int = PROFILES,
    bandwidth: float = PROFILE_BANDWIDTH,
    iterations: int = EM_ITERATIONS,
) -> tuple[FloatArray, FloatArray]:
    """The daily profiles (K, 24) and their weights (K,) by EM over everyone's counts.

    A finite mixture [McLachlan & Peel 2000] of per-send rate curves with a Gamma level per
    person, fitted by EM with a smoothing step after each M-step (the EMS algorithm, Silverman et
    al. 1990): profile c's rate at hour h is its people's opens over their sends weighted by their
    level, both smoothed over neighbouring hours, plus PROFILE_PSEUDO_SENDS at the curve's shape.
    Rates per send and levels matter: a history skewed to 10:00 makes raw opens peak at 10:00 for
    every profile, and levels keep people who open a lot from defining a profile's shape.

    EM starts from K peaks spread evenly over the day on top of `curve`, never from a previous fit
    or the curve alone: identical profiles are a fixed point of EM (they get identical shares of
    every person, so stay identical), which is how a mixture collapses into one curve. With one
    profile, or nobody's counts, the answer is the curve itself: the single-curve model.
    """
    sends_, opens_ = _counts(sends, opens)
    people_sends, people_opens = sends_.reshape(-1, HOURS), opens_.reshape(-1, HOURS)
    base = np.clip(np.asarray(curve, dtype=np.float64), _RATE_FLOOR, MAX_PRIOR_RATE)
    if profiles < 1:
        raise ValueError("profiles must be at least 1")
    if profiles == 1 or not people_sends.any():
        return base[None, :], np.ones(1)
    start = _start_profiles(base, profiles)
    prior = HourPrior(base, 1.0, level_shape, start, np.full(profiles, 1.0 / profiles))
    previous = -np.inf
    for _ in range(iterations):
        prior, log_likelihood = _em_step(people_sends, people_opens, prior, bandwidth)
        if log_likelihood - previous < _EM_TOLERANCE * people_sends.shape[0]:
            break
        previous = log_likelihood
    return prior.daily_profiles()


def _start_profiles(curve: FloatArray, profiles: int) -> FloatArray:
    """The curve times a peak every 24/K hours, each rescaled to the curve's mean rate."""
    centres = np.arange(profiles) * HOURS / profiles
    hours = np.arange(HOURS, dtype=np.float64)
    apart = np.abs(hours[None, :] - centres[:, None])
    distance = np.minimum(apart, HOURS - apart)
    peaks = 1.0 + _START_LIFT * np.exp(-0.5 * (distance / _START_WIDTH) ** 2)
    shapes = curve[None, :] * peaks
    start: FloatArray = shapes * curve.mean() / shapes.mean(axis=1, keepdims=True)
    return start


def _em_step(
    sends: FloatArray, opens: FloatArray, prior: HourPrior, bandwidth: float
) -> tuple[HourPrior, float]:
    """One E-step (shares of each person, levels) and smoothed M-step; the log-likelihood of the
    profiles it started from, up to a constant per person."""
    profiles, weights = prior.daily_profiles()
    expected = sends @ profiles.T
    total = opens.sum(axis=-1, keepdims=True)
    shape = prior.level_shape
    joint = (
        opens @ np.log(profiles).T - (total + shape) * np.log(expected + shape) + np.log(weights)
    )
    top = joint.max(axis=-1, keepdims=True)
    log_likelihood = float(np.sum(top + np.log(np.exp(joint - top).sum(axis=-1, keepdims=True))))
    responsibilities = _softmax(joint, axis=-1)
    levels = (total + shape) / (expected + shape)
    profile_opens = smooth_hours(responsibilities.T @ opens, bandwidth)
    exposure = smooth_hours((responsibilities * levels).T @ sends, bandwidth)
    # Hours a profile has few sends at take the curve's shape at the profile's own rate per send
    # (relative to the curve's mean; the same pseudo-sends make it 1 for a profile with no
    # people). Measured against a scale of its opens over those expected at the curve (a Poisson
    # fit of the curve's shape): +7.9 % vs +7.2 % opens over the best fixed hour, seeds 1 to 8.
    average = prior.curve.mean()
    rate = (profile_opens.sum(axis=1) + PROFILE_PSEUDO_SENDS * average) / (
        exposure.sum(axis=1) + PROFILE_PSEUDO_SENDS
    )
    scale = rate / average
    fitted = (profile_opens + PROFILE_PSEUDO_SENDS * scale[:, None] * prior.curve) / (
        exposure + PROFILE_PSEUDO_SENDS
    )
    shares = responsibilities.sum(axis=0)
    updated = HourPrior(
        prior.curve,
        prior.strength,
        shape,
        np.clip(fitted, _RATE_FLOOR, MAX_PRIOR_RATE),
        np.maximum(shares / shares.sum(), _RATE_FLOOR),
    )
    return updated, log_likelihood


def _leave_hour_out_means(sends: FloatArray, opens: FloatArray, prior: HourPrior) -> FloatArray:
    """`person_prior_means` for each hour from the person's other hours only, shape (n, 24).

    The strength is fitted with these: a prior mean that already holds an hour's counts (through
    the level or the profile's share) fits that hour too well, and k ran to its upper bound.
    """
    people_sends, people_opens = sends.reshape(-1, HOURS), opens.reshape(-1, HOURS)
    means = np.zeros_like(people_sends)
    for start in range(0, people_sends.shape[0], _BLOCK):
        block = slice(start, start + _BLOCK)
        means[block] = _leave_hour_out_block(people_sends[block], people_opens[block], prior)
    return means


def _leave_hour_out_block(sends: FloatArray, opens: FloatArray, prior: HourPrior) -> FloatArray:
    """Arrays (people, profiles, hours): the likelihood, level and share without hour h."""
    profiles, weights = prior.daily_profiles()
    log_profiles = np.log(profiles)
    exposure = sends[:, None, :] * profiles[None, :, :]
    expected = exposure.sum(axis=-1, keepdims=True) - exposure
    total = opens.sum(axis=-1)[:, None, None] - opens[:, None, :]
    shape = prior.level_shape
    joint = (
        (opens @ log_profiles.T)[:, :, None]
        - opens[:, None, :] * log_profiles[None, :, :]
        - (total + shape) * np.log(expected + shape)
        + np.log(weights)[None, :, None]
    )
    responsibilities = _softmax(joint, axis=1)
    levels = (total + shape) / (expected + shape)
    means = (responsibilities * levels * profiles[None, :, :]).sum(axis=1)
    clipped: FloatArray = np.clip(means, _RATE_FLOOR, MAX_PRIOR_RATE)
    return clipped


def fit_prior(
    sends: ArrayLike,
    opens: ArrayLike,
    untargeted_sends: ArrayLike,
    untargeted_opens: ArrayLike,
    *,
    bandwidth: float = POPULATION_BANDWIDTH,
    strength_range: tuple[float, float] = STRENGTH_RANGE,
    profiles: int = PROFILES,
    profile_bandwidth: float = PROFILE_BANDWIDTH,
) -> HourPrior:
    """The empirical-Bayes prior: the curve, the level shape, the daily profiles, the strength.

    `sends` and `opens` are everyone's counts, shape (n, 24). The curve comes from the untargeted
    ones only, pooled by hour: sends whose hour did not depend on the person (a campaign's fixed
    hour, this model's exploration). Sends this model targeted went to the people who engage at
    that hour, so their pooled rate would flatter that hour, the curve would follow, and more
    people would be sent there: a loop that drifts away from the truth. The profiles are fitted
    on everyone's counts (`fit_profiles`): a mixture explains why a person was sent at 08:00 (they
    are a morning person), which a single pooled curve cannot, so the drift is small (see docs).

    The strength is fitted on each person's own (unsmoothed) counts around their prior means, so
    it measures how far a person's hours really stray from their profiles at their level.
    `profiles=1` is the single-curve model: the curve times a level, no mixture.
    """
    sends_, opens_ = _counts(sends, opens)
    curve = population_curve(untargeted_sends, untargeted_opens, bandwidth)
    level_shape = fit_level_shape(sends_, opens_, curve)
    shapes, weights = fit_profiles(
        sends_, opens_, curve, level_shape, profiles=profiles, bandwidth=profile_bandwidth
    )
    mixture = HourPrior(curve, strength_range[0], level_shape, shapes, weights)
    means = _leave_hour_out_means(sends_, opens_, mixture)
    strength = fit_strength(sends_, opens_, means, strength_range)
    return HourPrior(curve, strength, level_shape, shapes, weights)


def posterior(
    sends: ArrayLike, opens: ArrayLike, prior: HourPrior, *, bandwidth: float = PERSON_BANDWIDTH
) -> tuple[FloatArray, FloatArray]:
    """Beta(alpha, beta) per person and hour: the prior mean from the profiles the person's counts
    make likely, at their level (`person_prior_means`), plus their counts hour by hour.

    The person's counts are smoothed across neighbouring hours first, so opens at 19 and 21 also
    speak for 20; the kernel keeps totals, so the posterior holds no more evidence than was seen.
    """
    sends_, opens_ = _counts(sends, opens)
    means = person_prior_means(sends_, opens_, prior)
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
    over exactly the hours the skewed history never tried. Thompson and top-two Thompson sampling
    (Russo 2016) over profiles or hours were measured on top of this prior: they found the exact
    hour no more often beyond noise and cost 2 to 18 points of opens (docs/models/send-time.md).
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


def _softmax(values: FloatArray, axis: int) -> FloatArray:
    shifted = np.exp(values - values.max(axis=axis, keepdims=True))
    normalised: FloatArray = shifted / shifted.sum(axis=axis, keepdims=True)
    return normalised


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

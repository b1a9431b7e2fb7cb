"""Simulator scenario: send hours chosen by services/journey/timing.py against fixed and oracle.

A planted population has a true open-or-click probability per local hour for each person. The
history the model starts from is skewed (nearly everyone was sent at 10:00), then every simulated
day each person gets one send at the hour the policy picks, and the model learns from the opens.
A second policy, the naive one, sends at the hour with the most raw opens (with the same share of
uniform exploration), to show why the model counts opens per send. The same uniform draw decides
the open for every policy and reference (common random numbers), so their differences are not
noise between separate samples.

Besides the policy's figures the scenario reports a ceiling for the exact-hour figure: on the
same counts, the hour most likely to be each person's true best knowing the planted population's
distribution exactly (`bayes_best_hours`). No learner that sees only these counts does better on
average, so a target above it is out of reach with this much data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray
from scipy.stats import beta, norm  # type: ignore[import-untyped, unused-ignore]

from bench.decisions.result import Curve, Figure, ScenarioResult
from services.journey.timing import (
    EXPLORE_SHARE,
    HOURS,
    HourPrior,
    best_time_within,
    choose_hours,
    fit_prior,
    posterior_means,
)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

BEST_HOUR_TARGET = 0.60
LIFT_TARGET = 0.10
# The prior is a batch fit, refreshed weekly as a nightly job would; people's counts move daily.
PRIOR_REFIT_DAYS = 7
LATE_DAYS = 14
# The grid of the Bayes ceiling: preferred time in quarter hours, quantiles of rate and lift.
# Finer grids (240 x 30 x 10) moved the ceiling by under a point.
GRID_PREFERRED = 96
GRID_RATES = 16
GRID_LIFTS = 6
_GRID_BLOCK = 256


@dataclass(frozen=True)
class Population:
    """The planted truth: open probability per person and local hour, and each one's zone."""

    rates: FloatArray
    zones: list[str]

    @property
    def best_hours(self) -> IntArray:
        best: IntArray = np.argmax(self.rates, axis=1).astype(np.int64)
        return best


@dataclass
class Counts:
    """What a policy has seen: everyone's counts (n, 24), and the untargeted ones pooled (24,)."""

    sends: FloatArray
    opens: FloatArray
    untargeted_sends: FloatArray
    untargeted_opens: FloatArray

    def copy(self) -> Counts:
        return Counts(
            self.sends.copy(),
            self.opens.copy(),
            self.untargeted_sends.copy(),
            self.untargeted_opens.copy(),
        )

    def prior(self) -> HourPrior:
        return fit_prior(self.sends, self.opens, self.untargeted_sends, self.untargeted_opens)

    def record(self, hours: IntArray, opened: BoolArray, explored: BoolArray) -> None:
        rows = np.arange(hours.size)
        self.sends[rows, hours] += 1.0
        self.opens[rows, hours] += opened
        np.add.at(self.untargeted_sends, hours[explored], 1.0)
        np.add.at(self.untargeted_opens, hours[explored], opened[explored].astype(np.float64))


@dataclass
class Tally:
    """Opens per simulated day for each policy and reference, all on the same draws."""

    policy: list[int] = field(default_factory=list)
    raw_opens: list[int] = field(default_factory=list)
    fixed: list[int] = field(default_factory=list)
    oracle: list[int] = field(default_factory=list)
    zone_checks: int = 0
    zone_agreements: int = 0


def run(truth: Mapping[str, Any], seed: int) -> ScenarioResult:
    """Plant the population, start from the skewed history, simulate the days, score."""
    rng = np.random.default_rng(seed)
    population = plant(truth, rng)
    counts = skewed_history(truth["history"], population.rates, rng)
    naive = counts.copy()
    fixed_hour = int(np.argmax(population.rates.sum(axis=0)))
    tally = simulate(truth, population, counts, naive, fixed_hour, rng)
    return score(truth, population, counts, naive, fixed_hour, tally)


def plant(truth: Mapping[str, Any], rng: np.random.Generator) -> Population:
    """Each person: an off-peak rate, a preferred time of day with a lift on top, a night dip."""
    people = int(truth["people"])
    base = _beta_rates(truth["off_peak_rate"], people, rng)
    preferred = _preferred_hours(truth["preferred_hours"], people, rng)
    peak = truth["peak"]
    lift = np.maximum(rng.normal(peak["lift_mean"], peak["lift_sd"], people), 0.0)
    zones = _zones(truth["time_zones"], people, rng)
    return Population(hourly_rates(truth, base, preferred, lift), zones)


def hourly_rates(
    truth: Mapping[str, Any], base: FloatArray, preferred: FloatArray, lift: FloatArray
) -> FloatArray:
    """Rates per send by local hour, shape (n, 24), for people's off-peak rate, preferred time
    of day and lift at it."""
    peak, night = truth["peak"], truth["night"]
    hours = np.arange(HOURS, dtype=np.float64)
    bump = np.exp(-0.5 * (_hours_apart(hours[None, :], preferred[:, None]) / peak["width"]) ** 2)
    rhythm = np.where((hours >= night["from"]) & (hours < night["to"]), night["factor"], 1.0)
    rates = base[:, None] * rhythm[None, :] * (1.0 + lift[:, None] * bump)
    clipped: FloatArray = np.clip(rates, 0.0, float(truth["max_rate"]))
    return clipped


def skewed_history(
    history: Mapping[str, Any], rates: FloatArray, rng: np.random.Generator
) -> Counts:
    """Past sends at a few campaign hours (a share `spread` at any other hour), opens from truth.

    A campaign's hour does not depend on the person, so all of history counts as untargeted.
    """
    people = rates.shape[0]
    count = int(history["sends"])
    campaign_hours = np.asarray(history["hours"], dtype=np.int64)
    weights = np.asarray(history["weights"], dtype=np.float64)
    hours = rng.choice(campaign_hours, size=(people, count), p=weights / weights.sum())
    strays = rng.random((people, count)) < float(history["spread"])
    hours = np.where(strays, rng.integers(0, HOURS, size=(people, count)), hours)
    opened = rng.random((people, count)) < np.take_along_axis(rates, hours, axis=1)
    sends = np.zeros((people, HOURS))
    opens = np.zeros((people, HOURS))
    rows = np.repeat(np.arange(people), count)
    np.add.at(sends, (rows, hours.ravel()), 1.0)
    np.add.at(opens, (rows, hours.ravel()), opened.ravel().astype(np.float64))
    return Counts(sends, opens, sends.sum(axis=0), opens.sum(axis=0))


def simulate(
    truth: Mapping[str, Any],
    population: Population,
    counts: Counts,
    naive: Counts,
    fixed_hour: int,
    rng: np.random.Generator,
) -> Tally:
    """One send per person per day for each policy; `counts` and `naive` are updated in place."""
    rows = np.arange(population.rates.shape[0])
    best = population.best_hours
    start = datetime.fromisoformat(truth["start"])
    tally = Tally()
    prior = counts.prior()
    for day in range(int(truth["days"])):
        if day % PRIOR_REFIT_DAYS == 0:
            prior = counts.prior()
        choice = choose_hours(counts.sends, counts.opens, prior, rng)
        naive_hours, naive_explored = raw_opens_choice(naive.opens, rng)
        draw = rng.random(rows.size)
        opened = draw < population.rates[rows, choice.hours]
        naive_opened = draw < population.rates[rows, naive_hours]
        tally.policy.append(int(opened.sum()))
        tally.raw_opens.append(int(naive_opened.sum()))
        tally.fixed.append(int((draw < population.rates[:, fixed_hour]).sum()))
        tally.oracle.append(int((draw < population.rates[rows, best]).sum()))
        now = start + timedelta(days=day)
        _check_schedule(truth, population, counts, prior, choice.hours, now, tally, rng)
        counts.record(choice.hours, opened, choice.explored)
        naive.record(naive_hours, naive_opened, naive_explored)
    return tally


def raw_opens_choice(opens: FloatArray, rng: np.random.Generator) -> tuple[IntArray, BoolArray]:
    """The naive policy: the hour with the most opens (ties at random), uniform exploration."""
    people = opens.shape[0]
    explored: BoolArray = np.less(rng.random(people), EXPLORE_SHARE)
    hours: IntArray = np.where(
        explored, rng.integers(0, HOURS, size=people), raw_opens_best(opens, rng)
    )
    return hours, explored


def raw_opens_best(opens: FloatArray, rng: np.random.Generator) -> IntArray:
    """The hour with the most opens, ties broken at random."""
    jitter = rng.random(opens.shape) * 1e-3
    best: IntArray = np.argmax(opens + jitter, axis=1).astype(np.int64)
    return best


def bayes_best_hours(truth: Mapping[str, Any], sends: FloatArray, opens: FloatArray) -> IntArray:
    """For each person, the hour most likely to be their true best given their counts, knowing
    the planted distribution of people (the Bayes rule for the exact-hour criterion).

    The posterior is computed on a grid over (preferred time, off-peak rate, lift) with the
    planted prior weights, opens Binomial per hour; P(best = h) sums the grid points whose curve
    peaks at h. Zones do not matter here: counts are by local hour.
    """
    rates, log_weights, peaks = _truth_grid(truth)
    peak_of = np.eye(HOURS)[peaks]
    log_rates, log_misses = np.log(np.maximum(rates, 1e-12)).T, np.log1p(-rates).T
    best = np.zeros(sends.shape[0], dtype=np.int64)
    for start in range(0, sends.shape[0], _GRID_BLOCK):
        block = slice(start, start + _GRID_BLOCK)
        hits, misses = opens[block], sends[block] - opens[block]
        log_posterior = hits @ log_rates + misses @ log_misses + log_weights
        posterior = np.exp(log_posterior - log_posterior.max(axis=1, keepdims=True))
        best[block] = np.argmax(posterior @ peak_of, axis=1)
    return best


def _truth_grid(truth: Mapping[str, Any]) -> tuple[FloatArray, FloatArray, IntArray]:
    """Grid points' rates (G, 24), log prior weights (G,) and the hour each peaks at (G,)."""
    preferred = (np.arange(GRID_PREFERRED) + 0.5) * HOURS / GRID_PREFERRED
    density = np.zeros(GRID_PREFERRED)
    for mode in truth["preferred_hours"]:
        for turn in (-HOURS, 0, HOURS):  # wrapped: a mode at 23:00 spills past midnight
            density += mode["weight"] * norm.pdf(preferred, mode["hour"] + turn, mode["sd"])
    spec, peak = truth["off_peak_rate"], truth["peak"]
    mean, concentration = float(spec["mean"]), float(spec["concentration"])
    base = beta.ppf(_midpoints(GRID_RATES), mean * concentration, (1 - mean) * concentration)
    lifts = np.maximum(norm.ppf(_midpoints(GRID_LIFTS), peak["lift_mean"], peak["lift_sd"]), 0.0)
    grid_preferred, grid_base, grid_lift = (
        axis.ravel() for axis in np.meshgrid(preferred, base, lifts, indexing="ij")
    )
    weights = np.repeat(density / density.sum(), GRID_RATES * GRID_LIFTS)
    rates = hourly_rates(truth, grid_base, grid_preferred, grid_lift)
    peaks: IntArray = np.argmax(rates, axis=1).astype(np.int64)
    return rates, np.log(weights), peaks


def _midpoints(count: int) -> FloatArray:
    """Equal-probability quantile levels: each grid value stands for 1/count of the prior."""
    levels: FloatArray = (np.arange(count) + 0.5) / count
    return levels


def score(
    truth: Mapping[str, Any],
    population: Population,
    counts: Counts,
    naive: Counts,
    fixed_hour: int,
    tally: Tally,
) -> ScenarioResult:
    """Best hour found among people with enough opens; opens after warm-up against fixed hour."""
    min_opens = int(truth["min_opens"])
    prior = counts.prior()
    found = np.argmax(posterior_means(counts.sends, counts.opens, prior), axis=1)
    raw = raw_opens_best(naive.opens, np.random.default_rng(0))
    ceiling = bayes_best_hours(truth, counts.sends, counts.opens)
    best = population.best_hours
    counted = counts.opens.sum(axis=1) >= min_opens
    warmup = int(truth["warmup_days"])
    opens = {
        "policy": sum(tally.policy[warmup:]),
        "raw-opens policy": sum(tally.raw_opens[warmup:]),
        "best fixed hour": sum(tally.fixed[warmup:]),
        "oracle": sum(tally.oracle[warmup:]),
    }
    fixed = opens["best fixed hour"]
    figures = [
        Figure(
            f"best hour found (people with ≥ {min_opens} opens)",
            _share(found == best, counted),
            BEST_HOUR_TARGET,
        ),
        Figure("best hour by raw opens (same people)", _share(raw == best, counted)),
        Figure(
            "best hour found by the Bayes rule knowing the planted population (ceiling)",
            _share(ceiling == best, counted),
        ),
        Figure("opens vs best fixed hour", opens["policy"] / fixed - 1.0, LIFT_TARGET),
        Figure("raw-opens policy opens vs best fixed hour", opens["raw-opens policy"] / fixed - 1),
        Figure("oracle opens vs best fixed hour", opens["oracle"] / fixed - 1.0),
    ]
    late = sum(tally.policy[-LATE_DAYS:]) / sum(tally.fixed[-LATE_DAYS:]) - 1.0
    details = {
        "people counted": int(counted.sum()),
        "best fixed hour": fixed_hour,
        "best hour within ±1 h (people counted)": _share(_hours_apart(found, best) <= 1, counted),
        "raw opens within ±1 h (people counted)": _share(_hours_apart(raw, best) <= 1, counted),
        "Bayes ceiling, same counts, planted distribution known": {
            "best hour found": _share(ceiling == best, counted),
            "within ±1 h": _share(_hours_apart(ceiling, best) <= 1, counted),
        },
        f"opens vs best fixed hour, last {LATE_DAYS} days": late,
        "opens after warm-up": opens,
        "prior at the end": {
            "strength": prior.strength,
            "level shape": prior.level_shape,
            "daily profiles (share, peak hour)": _profiles(prior),
        },
        "scheduled in the chosen local hour": f"{tally.zone_agreements}/{tally.zone_checks}",
    }
    curves = [
        Curve("policy (timing.py)", _cumulative(tally.policy)),
        Curve("raw-opens policy", _cumulative(tally.raw_opens)),
        Curve(f"best fixed hour ({fixed_hour}:00)", _cumulative(tally.fixed)),
        Curve("oracle (true best hour)", _cumulative(tally.oracle)),
    ]
    return ScenarioResult(
        "send_time", figures, curves, x_label="day", y_label="cumulative opens", details=details
    )


def _check_schedule(
    truth: Mapping[str, Any],
    population: Population,
    counts: Counts,
    prior: HourPrior,
    hours: IntArray,
    now: datetime,
    tally: Tally,
    rng: np.random.Generator,
) -> None:
    """For a sample, schedule the chosen hour in the person's zone and check its local hour.

    The chosen hour is put first and the posterior means rank the rest, as dispatch would; a
    zone's DST change can skip the chosen hour on that day, which counts as a disagreement.
    """
    people = rng.choice(hours.size, size=int(truth["zone_checks_per_day"]), replace=False)
    scores = posterior_means(counts.sends[people], counts.opens[people], prior)
    scores[np.arange(people.size), hours[people]] = 2.0
    for person, person_scores in zip(people, scores, strict=True):
        zone = population.zones[person]
        at = best_time_within(now, zone, timedelta(hours=24), person_scores)
        tally.zone_checks += 1
        tally.zone_agreements += int(at.astimezone(ZoneInfo(zone)).hour == hours[person])


def _profiles(prior: HourPrior) -> list[tuple[float, int]]:
    shapes, weights = prior.daily_profiles()
    peaks = np.argmax(shapes, axis=1)
    pairs = zip(weights, peaks, strict=True)
    return sorted(((round(float(w), 3), int(h)) for w, h in pairs), key=lambda pair: pair[1])


def _beta_rates(spec: Mapping[str, Any], size: int, rng: np.random.Generator) -> FloatArray:
    mean, concentration = float(spec["mean"]), float(spec["concentration"])
    return rng.beta(mean * concentration, (1.0 - mean) * concentration, size)


def _preferred_hours(
    modes: Sequence[Mapping[str, Any]], size: int, rng: np.random.Generator
) -> FloatArray:
    """Preferred times of day from a mixture of modes (morning, lunch, evening), wrapped to 24 h."""
    weights = np.asarray([mode["weight"] for mode in modes], dtype=np.float64)
    picked = rng.choice(len(modes), size=size, p=weights / weights.sum())
    centres = np.asarray([mode["hour"] for mode in modes], dtype=np.float64)[picked]
    spreads = np.asarray([mode["sd"] for mode in modes], dtype=np.float64)[picked]
    return np.mod(rng.normal(centres, spreads), HOURS)


def _zones(shares: Mapping[str, float], size: int, rng: np.random.Generator) -> list[str]:
    names = list(shares)
    weights = np.asarray([shares[name] for name in names], dtype=np.float64)
    return [names[i] for i in rng.choice(len(names), size=size, p=weights / weights.sum())]


def _hours_apart(a: NDArray[Any], b: NDArray[Any]) -> NDArray[Any]:
    """Circular distance in hours: 23 and 1 are two hours apart."""
    apart = np.abs(a - b)
    distance: NDArray[Any] = np.minimum(apart, HOURS - apart)
    return distance


def _share(hits: BoolArray, counted: BoolArray) -> float:
    return float(np.mean(hits[counted])) if counted.any() else 0.0


def _cumulative(values: Sequence[int]) -> list[float]:
    return [float(total) for total in np.cumsum(values)]

"""The variant bandit: Thompson sampling over Beta posteriors, by context, and when to stop.

Without context (what `choose_variant` does): each variant's reward rate has the posterior
Beta(successes + 1, failures + 1), where a success is a click (or a conversion, a template
setting) and a trial is a sent message. Per request the bandit draws once from every posterior and
picks the highest draw, so a variant is chosen with the probability that it is the best:
exploration fades as evidence grows.

With context (`fit`, `choose`, `evaluate`): the same sampling, but on each context's posterior in
a hierarchical Beta-Binomial model, where a thin context borrows strength from the pools it belongs
to; the choice comes with its probability (for off-policy evaluation, `ips_estimate`); the
experiment ends by Scott's value-remaining rule and the leading variants are then promoted; counts
are discounted with age (`decay`) so that a changed world reopens it. docs/models/bandit.md has
the model, its assumptions, how it fails and the references.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import quote, unquote

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betaln  # type: ignore[import-untyped, unused-ignore]

FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.intp]

_BEST_DRAWS = 4000
# Values of a level's relative spread tried, log-spaced within `BanditSettings.spread_bounds`.
_SPREAD_GRID = 41


@dataclass(frozen=True)
class VariantStats:
    """What the bandit knows about one variant."""

    variant_id: str
    trials: int = 0
    successes: float = 0.0

    @property
    def alpha(self) -> float:
        return min(self.successes, self.trials) + 1.0

    @property
    def beta(self) -> float:
        # Outcomes arrive out of order: a click can come before its `message.sent`.
        return max(self.trials - self.successes, 0.0) + 1.0

    @property
    def posterior_mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)


def held_out(share: float, rng: random.Random) -> bool:
    """Whether this request belongs to the holdout: no message, a baseline to compare with."""
    return rng.random() < share


def choose_variant(stats: Sequence[VariantStats], rng: random.Random) -> VariantStats:
    """Thompson sampling: the variant whose posterior draw is highest."""
    if not stats:
        raise ValueError("a template has at least one variant")
    return max(stats, key=lambda s: rng.betavariate(s.alpha, s.beta))


def probability_best(stats: Sequence[VariantStats], rng: random.Random) -> dict[str, float]:
    """For each variant, the share of joint posterior draws in which it is the best."""
    wins = dict.fromkeys((s.variant_id for s in stats), 0)
    for _ in range(_BEST_DRAWS if len(stats) > 1 else 0):
        wins[choose_variant(stats, rng).variant_id] += 1
    if len(stats) == 1:
        return {stats[0].variant_id: 1.0}
    return {variant_id: count / _BEST_DRAWS for variant_id, count in wins.items()}


# The context.

HOUR_BANDS = ("night", "morning", "afternoon", "evening")

# Each field of a context and its name in a key, in key order.
_KEY_NAMES = {
    "lifecycle_stage": "stage",
    "top_category": "category",
    "channel": "channel",
    "hour_band": "band",
}

# The pools a context borrows from, coarse to fine; the last level is the context itself. A
# template has one channel, so its first level holds one pool: it is kept so that pool keys mean
# the same across templates. Stage comes before category because a customer's lifecycle stage is
# the likelier reason for a different taste in messages.
POOL_LEVELS: tuple[tuple[str, ...], ...] = (
    ("channel",),
    ("lifecycle_stage", "channel"),
    ("lifecycle_stage", "top_category", "channel"),
    ("lifecycle_stage", "top_category", "channel", "hour_band"),
)

# The template's own pool: every context of it.
TEMPLATE_POOL = ""


def hour_band(hour: int) -> str:
    """The band of a local hour: night 0-5, morning 6-11, afternoon 12-17, evening 18-23."""
    if not 0 <= hour <= 23:
        raise ValueError(f"an hour is 0 to 23, not {hour}")
    return HOUR_BANDS[hour // 6]


@dataclass(frozen=True)
class Context:
    """What the platform knows at send time: the person's stage and taste, the channel, the hour."""

    lifecycle_stage: str | None
    top_category: str | None
    channel: str
    hour_band: str

    @property
    def key(self) -> str:
        """The storage key, e.g. `stage=active|category=shoes|channel=email|band=evening`."""
        return self.pool_key(POOL_LEVELS[-1])

    def pool_key(self, fields: Sequence[str]) -> str:
        """The key of the coarser pool that only knows `fields` (in the order of `key`)."""
        # Quoted so that a value holding `|` or `=` cannot make two contexts share a key.
        return "|".join(
            f"{name}={quote(getattr(self, field) or '', safe='')}"
            for field, name in _KEY_NAMES.items()
            if field in fields
        )

    @cached_property
    def pool_keys(self) -> tuple[str, ...]:
        """The keys of the pools of `POOL_LEVELS`, coarse to fine, ending with its own key."""
        return tuple(self.pool_key(level) for level in POOL_LEVELS)

    @classmethod
    def from_key(cls, key: str) -> Context:
        """The context a key was made of (an empty stage or category is None)."""
        values = {
            name: value for name, _, value in (part.partition("=") for part in key.split("|"))
        }
        if set(values) != set(_KEY_NAMES.values()):
            raise ValueError(f"not a context key: {key!r}")
        decoded = {field: unquote(values[name]) for field, name in _KEY_NAMES.items()}
        return cls(
            lifecycle_stage=decoded["lifecycle_stage"] or None,
            top_category=decoded["top_category"] or None,
            channel=decoded["channel"],
            hour_band=decoded["hour_band"],
        )


# Evidence, and its decay.


@dataclass(frozen=True)
class Counts:
    """The evidence of one variant in one context: sends and successes, discounted with age."""

    trials: float = 0.0
    successes: float = 0.0


# (context key, variant id) -> its counts: the rows the service keeps per template.
Evidence = Mapping[tuple[str, str], Counts]

DEFAULT_HALF_LIFE_DAYS = 30.0


def decay_factor(elapsed_days: float, half_life_days: float = DEFAULT_HALF_LIFE_DAYS) -> float:
    """What a count is still worth after `elapsed_days`: gamma^days, gamma = 2^(-1 / half-life)."""
    if elapsed_days < 0 or half_life_days <= 0:
        raise ValueError("elapsed time is not negative and the half-life is positive")
    return float(0.5 ** (elapsed_days / half_life_days))


def decay(
    evidence: Evidence, elapsed_days: float, half_life_days: float = DEFAULT_HALF_LIFE_DAYS
) -> dict[tuple[str, str], Counts]:
    """Every count discounted for `elapsed_days` (discounted Thompson sampling)."""
    factor = decay_factor(elapsed_days, half_life_days)
    return {
        row: Counts(counts.trials * factor, counts.successes * factor)
        for row, counts in evidence.items()
    }


# The hierarchical model.


@dataclass(frozen=True)
class BanditSettings:
    """The contextual bandit's settings; docs/models/bandit.md explains each default."""

    # Monte-Carlo draws of the posterior per choice and per evaluation.
    draws: int = 1000
    # After promotion the leader is chosen with 1 - floor; the others share the floor.
    exploration_floor: float = 0.05
    # Scott's rule: the experiment ends when this quantile of the value remaining is below
    # `promote_below`, or when the leaders are the best with at least `promote_probability`.
    value_quantile: float = 0.95
    promote_below: float = 0.01
    promote_probability: float = 0.95
    # A promotion stands until the value remaining exceeds this (and the probability rule fails).
    # Well above `promote_below`: once promoted, the runners-up only get the floor, so as decay
    # ages their evidence the value remaining creeps up even in a world that has not changed.
    lift_above: float = 0.10
    # The range of a level's relative spread: how far a pool's rate may stray from its parent's
    # (as a share of it); the level's spread is estimated within it.
    spread_bounds: tuple[float, float] = (0.01, 1.0)


DEFAULT_SETTINGS = BanditSettings()


@dataclass(frozen=True, eq=False)
class PoolPosterior:
    """One pool's posterior: Beta(alpha, beta) per variant, on the rate standardised to the
    template's base rate; `lift` is the pool's base rate (all variants) over the template's."""

    alpha: FloatArray
    beta: FloatArray
    lift: float

    @property
    def means(self) -> FloatArray:
        """The posterior mean click (or conversion) rate of each variant in this pool."""
        return self.lift * self.alpha / (self.alpha + self.beta)


@dataclass(frozen=True, eq=False)
class ContextualModel:
    """The fitted posteriors of every pool of a template, and what each context has been sent."""

    variants: tuple[str, ...]
    # Pool key (`TEMPLATE_POOL`, or a key of some level of `POOL_LEVELS`) -> its posterior.
    pools: Mapping[str, PoolPosterior]
    # Per level of `POOL_LEVELS`, each variant's relative spread (empirical Bayes).
    spreads: tuple[FloatArray, ...]
    # Context key -> its sends (discounted) over all variants.
    traffic: Mapping[str, float]

    def posterior(self, context: Context) -> PoolPosterior:
        """The context's posterior; for a context without evidence, its deepest known pool's."""
        keys = (TEMPLATE_POOL, *context.pool_keys)
        depth = max(level for level, key in enumerate(keys) if key in self.pools)
        found = self.pools[keys[depth]]
        alpha, beta = found.alpha, found.beta
        # Each level without evidence of its own widens the prior by that level's spread.
        for spread in self.spreads[depth:]:
            alpha, beta = _child_prior(alpha, beta, spread)
        return PoolPosterior(alpha, beta, found.lift)

    def posterior_means(self, context: Context) -> dict[str, float]:
        """The posterior mean rate of each variant in the context."""
        return dict(zip(self.variants, self.posterior(context).means.tolist(), strict=True))


def fit(
    evidence: Evidence, variants: Sequence[str], settings: BanditSettings = DEFAULT_SETTINGS
) -> ContextualModel:
    """The posteriors of every pool, with each level's spread by empirical Bayes.

    First the base rate of every pool (all variants together) is pooled down the levels; then
    each variant's rate, standardised by its context's base rate so that the spread measured at a
    level is the variants' different taste there, not that some contexts click more than others.
    Rows of variants not in `variants` are ignored (a variant since removed from the template).
    """
    if not variants:
        raise ValueError("a template has at least one variant")
    keys, trials, successes = _evidence_arrays(evidence, variants)
    contexts = [Context.from_key(key) for key in keys]
    levels = [_level_membership(contexts, fields) for fields in POOL_LEVELS]
    members = [member for _, member in levels]
    base, _ = _pool_down(
        successes.sum(axis=1, keepdims=True), trials.sum(axis=1, keepdims=True), members, settings
    )
    base_rates = [alpha[:, 0] / (alpha[:, 0] + beta[:, 0]) for alpha, beta in base]
    lifts = [rates / base_rates[0][0] for rates in base_rates]
    # A send in a context that clicks twice as much as the template counts as two sends at the
    # template's base rate (the exposure), so that standardised rates are comparable.
    exposure = trials * lifts[-1][:, None]
    posteriors, spreads = _pool_down(successes, exposure, members, settings)
    pool_keys = [[TEMPLATE_POOL], *(names for names, _ in levels)]
    pools = {
        key: PoolPosterior(alpha[row], beta[row], float(lift[row]))
        for names, (alpha, beta), lift in zip(pool_keys, posteriors, lifts, strict=True)
        for row, key in enumerate(names)
    }
    traffic = dict(zip(keys, trials.sum(axis=1).tolist(), strict=True))
    return ContextualModel(tuple(variants), pools, tuple(spreads), traffic)


def _evidence_arrays(
    evidence: Evidence, variants: Sequence[str]
) -> tuple[list[str], FloatArray, FloatArray]:
    """Context keys, and their trials and successes as (context, variant) arrays."""
    column = {variant: index for index, variant in enumerate(variants)}
    keys = sorted({key for key, variant in evidence if variant in column})
    row = {key: index for index, key in enumerate(keys)}
    trials = np.zeros((len(keys), len(variants)))
    successes = np.zeros((len(keys), len(variants)))
    for (key, variant), counts in evidence.items():
        if variant in column:
            trials[row[key], column[variant]] = counts.trials
            # Outcomes arrive out of order: a click can come before its `message.sent`.
            successes[row[key], column[variant]] = min(counts.successes, counts.trials)
    return keys, trials, successes


def _level_membership(
    contexts: Sequence[Context], fields: Sequence[str]
) -> tuple[list[str], IndexArray]:
    """The pool keys of one level, and the pool of each context as an index into them."""
    names, member = np.unique(
        np.asarray([context.pool_key(fields) for context in contexts], dtype=object),
        return_inverse=True,
    )
    return [str(name) for name in names], member.astype(np.intp)


def _pool_down(
    successes: FloatArray,
    trials: FloatArray,
    members: Sequence[IndexArray],
    settings: BanditSettings,
) -> tuple[list[tuple[FloatArray, FloatArray]], list[FloatArray]]:
    """Each level's posteriors (pool x variant), from the template down to the contexts.

    A pool's prior is its parent's posterior without the pool's own evidence (so that nothing
    counts twice), widened by the spread between pools of its level, estimated across them.
    """
    failures = np.maximum(trials - successes, 0.0)
    # The template's own prior is the uniform Beta(1, 1) of the non-contextual bandit.
    alpha = 1.0 + successes.sum(axis=0, keepdims=True)
    beta = 1.0 + failures.sum(axis=0, keepdims=True)
    posteriors = [(alpha, beta)]
    spreads: list[FloatArray] = []
    parent_of_context = np.zeros(successes.shape[0], dtype=np.intp)
    for member in members:
        pools = int(member.max()) + 1 if member.size else 0
        own_successes = _sum_by_pool(successes, member, pools)
        own_failures = _sum_by_pool(failures, member, pools)
        parent = _parent_of_pool(member, parent_of_context, pools)
        # Sums of the same floats in another order can differ in the last bit: stay positive.
        rest_alpha = np.maximum(alpha[parent] - own_successes, 1e-9)
        rest_beta = np.maximum(beta[parent] - own_failures, 1e-9)
        spread = _estimate_spread(
            own_successes, own_successes + own_failures, rest_alpha, rest_beta, settings
        )
        prior_alpha, prior_beta = _child_prior(rest_alpha, rest_beta, spread)
        alpha, beta = prior_alpha + own_successes, prior_beta + own_failures
        posteriors.append((alpha, beta))
        spreads.append(spread)
        parent_of_context = member
    return posteriors, spreads


def _sum_by_pool(values: FloatArray, member: IndexArray, pools: int) -> FloatArray:
    totals = np.zeros((pools, values.shape[1]))
    np.add.at(totals, member, values)
    return totals


def _parent_of_pool(member: IndexArray, parent_of_context: IndexArray, pools: int) -> IndexArray:
    """The parent pool of each pool: the parent of any of its contexts (levels are nested)."""
    first_context = np.full(pools, member.size, dtype=np.intp)
    np.minimum.at(first_context, member, np.arange(member.size, dtype=np.intp))
    return parent_of_context[first_context]


def _estimate_spread(
    successes: FloatArray,
    trials: FloatArray,
    prior_alpha: FloatArray,
    prior_beta: FloatArray,
    settings: BanditSettings,
) -> FloatArray:
    """Each variant's relative spread tau at a level, from its pools' marginal likelihood.

    Per variant, because variants differ in how much their appeal depends on the context (a
    plain control hardly does; a discount may). Each pool's counts are Beta-Binomial around its
    prior (the parent without it), and tau has a log-uniform prior within
    `settings.spread_bounds`, evaluated on a grid. The spread returned is sqrt(E[tau²]), the
    variance between pools being proportional to tau²: with little evidence it stays wide (weak
    pooling), where a point estimate would often say "no spread" and pool everything, starving
    a variant that wins only in some contexts.
    """
    grid = np.geomspace(*settings.spread_bounds, _SPREAD_GRID)[:, None]
    prior_alpha, prior_beta = _child_prior(prior_alpha, prior_beta, grid[:, None])
    failures = trials - successes
    log_likelihood = np.sum(
        _log_beta(prior_alpha + successes, prior_beta + failures)
        - _log_beta(prior_alpha, prior_beta),
        axis=1,
    )
    weights = np.exp(log_likelihood - log_likelihood.max(axis=0))
    spread: FloatArray = np.sqrt(np.sum(weights * grid**2, axis=0) / np.sum(weights, axis=0))
    return spread


def _log_beta(alpha: FloatArray, beta: FloatArray) -> FloatArray:
    values: FloatArray = np.asarray(betaln(alpha, beta), dtype=np.float64)
    return values


def _child_prior(
    alpha: FloatArray, beta: FloatArray, spread: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """A child's prior: its rate ~ Beta(k·θ, k·(1 - θ)) with θ ~ Beta(alpha, beta), as one Beta.

    k is set by the relative spread tau (the child's rate has sd tau·θ around θ): k + 1 =
    (1 - θ) / (θ·tau²), at least 2 (a spread that wide cannot be had around a high rate). The
    mixture's mean is θ's; matching its variance gives the strength (n + 1)(k + 1) / (n + k + 1)
    - 1 with n = alpha + beta: never more than n nor k, so a child is never surer of its parent's
    rate than the parent is.
    """
    total = alpha + beta
    mean = alpha / total
    strength = np.maximum((1.0 - mean) / (mean * np.square(spread)) - 1.0, 2.0)
    matched = (total + 1.0) * (strength + 1.0) / (total + strength + 1.0) - 1.0
    return matched * mean, matched * (1.0 - mean)


# Choosing, with the probability of the choice.


@dataclass(frozen=True)
class Choice:
    """The chosen variant and the probability the policy had of choosing it (its propensity)."""

    variant_id: str
    propensity: float
    probabilities: dict[str, float]


def choice_probabilities(
    model: ContextualModel,
    contexts: Sequence[Context],
    rng: np.random.Generator,
    *,
    promoted: bool = False,
    settings: BanditSettings = DEFAULT_SETTINGS,
) -> FloatArray:
    """Each context's probability of choosing each variant (context x variant; rows sum to 1).

    Thompson sampling chooses a variant with the probability that it is the best; that is
    estimated from `settings.draws` joint draws, and the choice is then made with exactly the
    estimate, so the propensity logged is the true probability of the choice made. Half a win is
    added per variant so that none has probability 0: inverse-propensity evaluation needs every
    variant to stay possible. After promotion: the leader 1 - floor, the others share the floor.
    """
    posteriors = [model.posterior(context) for context in contexts]
    alpha = np.asarray([p.alpha for p in posteriors]).reshape(len(contexts), len(model.variants))
    beta = np.asarray([p.beta for p in posteriors]).reshape(alpha.shape)
    if promoted:
        return _promoted_probabilities(alpha / (alpha + beta), settings.exploration_floor)
    if len(model.variants) == 1:
        return np.ones_like(alpha)
    wins = _win_counts(rng.beta(alpha, beta, size=(settings.draws, *alpha.shape)))
    return (wins + 0.5) / (settings.draws + 0.5 * len(model.variants))


def choose(
    model: ContextualModel,
    context: Context,
    rng: np.random.Generator,
    *,
    promoted: bool = False,
    settings: BanditSettings = DEFAULT_SETTINGS,
) -> Choice:
    """Contextual Thompson sampling (or the promoted leader): a variant and its propensity."""
    probabilities = choice_probabilities(
        model, [context], rng, promoted=promoted, settings=settings
    )[0]
    chosen = int(rng.choice(len(model.variants), p=probabilities))
    return Choice(
        model.variants[chosen],
        float(probabilities[chosen]),
        dict(zip(model.variants, probabilities.tolist(), strict=True)),
    )


def _promoted_probabilities(means: FloatArray, floor: float) -> FloatArray:
    variants = means.shape[1]
    if variants == 1:
        return np.ones_like(means)
    probabilities = np.full(means.shape, floor / (variants - 1))
    probabilities[np.arange(means.shape[0]), means.argmax(axis=1)] = 1.0 - floor
    return probabilities


def _win_counts(draws: FloatArray) -> FloatArray:
    """Per context and variant, in how many of the draws (draw x context x variant) it is best."""
    best = draws.argmax(axis=2)
    wins: FloatArray = (best[:, :, None] == np.arange(draws.shape[2])).sum(axis=0, dtype=np.float64)
    return wins


# When to stop exploring.


@dataclass(frozen=True)
class Evaluation:
    """The experiment's state: whether its leaders are promoted, and the figures behind it."""

    promoted: bool
    # The quantile (`settings.value_quantile`) of the value remaining: how much better than the
    # leaders the best variants may still be, relative to the leaders' value.
    value_remaining: float
    # A lower bound on the probability that every context's leader is its best variant.
    probability_optimal: float
    # Per variant, the traffic-weighted probability that it is the best.
    probability_best: dict[str, float]
    # Context key -> its leading variant (highest posterior mean); the template pool's key
    # (`TEMPLATE_POOL`) when there is no evidence yet.
    leaders: dict[str, str]

    @property
    def winner(self) -> str | None:
        """The promoted variant when one variant leads in every context, else None."""
        leading = set(self.leaders.values())
        return leading.pop() if self.promoted and len(leading) == 1 else None


def evaluate(
    model: ContextualModel,
    rng: np.random.Generator,
    *,
    promoted: bool = False,
    settings: BanditSettings = DEFAULT_SETTINGS,
) -> Evaluation:
    """Scott's (2015) rule on the contextual policy, with the current promotion for hysteresis.

    Per context, from joint posterior draws θ: the value remaining (max θ - θ_leader) / θ_leader
    and its quantile; the template's value remaining is their average weighted by each context's
    expected successes under its leader. Averaging quantiles takes the contexts' errors as fully
    dependent, which errs on the side of exploring longer. The experiment ends (the leaders are
    promoted) when that is below `promote_below` or the leaders are all best with probability at
    least `promote_probability`; a promotion is lifted once the value remaining exceeds
    `lift_above` and the probability rule fails too.
    """
    # No evidence yet: the template's own pool stands for every context.
    keys = [key for key, sent in model.traffic.items() if sent > 0] or [TEMPLATE_POOL]
    traffic = np.asarray([model.traffic.get(key, 1.0) for key in keys])
    posteriors = [model.pools[key] for key in keys]
    means = np.asarray([p.means for p in posteriors])
    leader = means.argmax(axis=1)
    alpha = np.asarray([p.alpha for p in posteriors])
    beta = np.asarray([p.beta for p in posteriors])
    draws = rng.beta(alpha, beta, size=(settings.draws, *alpha.shape))
    leader_value = traffic * means[np.arange(len(keys)), leader]
    value_remaining = _value_remaining(draws, leader, leader_value, settings.value_quantile)
    wins = _win_counts(draws) / settings.draws
    # Bonferroni: P(all leaders best) >= 1 - sum of P(a leader is not best).
    probability_optimal = max(0.0, 1.0 - float(np.sum(1.0 - wins[np.arange(len(keys)), leader])))
    share = traffic / traffic.sum()
    return Evaluation(
        promoted=_stays_promoted(promoted, value_remaining, probability_optimal, settings),
        value_remaining=value_remaining,
        probability_optimal=probability_optimal,
        probability_best=dict(zip(model.variants, (share @ wins).tolist(), strict=True)),
        leaders={key: model.variants[index] for key, index in zip(keys, leader, strict=True)},
    )


def _value_remaining(
    draws: FloatArray, leader: IndexArray, leader_value: FloatArray, quantile: float
) -> float:
    """Per context the quantile of (max θ - θ_leader) / θ_leader over the draws (draw x context
    x variant), averaged with weights `leader_value`."""
    leader_draw = draws[:, np.arange(draws.shape[1]), leader]
    remaining = (draws.max(axis=2) - leader_draw) / leader_draw
    per_context = np.quantile(remaining, quantile, axis=0)
    return float(np.sum(leader_value * per_context) / np.sum(leader_value))


def _stays_promoted(
    promoted: bool, value_remaining: float, probability_optimal: float, settings: BanditSettings
) -> bool:
    """Promoted if the experiment ends now, or if it was and has not reopened."""
    sure = probability_optimal >= settings.promote_probability
    if sure or value_remaining < settings.promote_below:
        return True
    return promoted and value_remaining <= settings.lift_above


# Off-policy evaluation from the logged propensities.


@dataclass(frozen=True)
class PolicyValue:
    """A target policy's estimated reward rate from another policy's logs."""

    # Horvitz-Thompson / inverse propensity scoring: unbiased, but noisy when weights are large.
    ips: float
    # Self-normalised: slightly biased, far less noisy; NaN if the target never chose as logged.
    snips: float
    # The standard error of `ips`.
    standard_error: float


def ips_estimate(
    logged_rewards: ArrayLike, logged_propensities: ArrayLike, target_probabilities: ArrayLike
) -> PolicyValue:
    """The value of a target policy from logs: each logged reward weighted by π(a|x) / μ(a|x).

    `target_probabilities` holds, per logged send, the probability that the target policy would
    have chosen the variant that was actually sent, in that send's context.
    """
    rewards = np.asarray(logged_rewards, dtype=np.float64)
    propensities = np.asarray(logged_propensities, dtype=np.float64)
    target = np.asarray(target_probabilities, dtype=np.float64)
    if not rewards.size or not rewards.shape == propensities.shape == target.shape:
        raise ValueError("one reward, propensity and target probability per logged send")
    if np.any(propensities <= 0.0) or np.any(propensities > 1.0):
        raise ValueError("logged propensities are probabilities above 0")
    weights = target / propensities
    weighted = weights * rewards
    total_weight = float(weights.sum())
    spread = float(weighted.std(ddof=1)) if rewards.size > 1 else math.inf
    return PolicyValue(
        ips=float(weighted.mean()),
        snips=float(weighted.sum()) / total_weight if total_weight > 0 else math.nan,
        standard_error=spread / math.sqrt(rewards.size),
    )

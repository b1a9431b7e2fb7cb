"""The variant bandit: Thompson sampling over Beta posteriors, by context, and when to stop.

Without context (what `choose_variant` does): each variant's reward rate has the posterior
Beta(successes + 1, failures + 1), where a success is a click (or a conversion, a template
setting) and a trial is a sent message. Per request the bandit draws once from every posterior and
picks the highest draw, so a variant is chosen with the probability that it is the best:
exploration fades as evidence grows.

With context (`fit`, `choose`, `evaluate`): the same sampling, but on each context's posterior in
a Bayesian logistic regression (variant x feature interactions, Laplace posterior, after Chapelle
and Li), where a thin or unseen context borrows strength from every context that shares one of
its features; the choice comes with its probability (for off-policy evaluation, `ips_estimate`);
the experiment ends by Scott's value-remaining rule and the leading variants are then promoted;
counts are discounted with age (`decay`) so that a changed world reopens it. The nested
hierarchical Beta-Binomial model it replaced stays available (`BanditSettings.model`) for
comparison. docs/models/bandit.md has the models, the figures that chose between them, their
assumptions, how they fail and the references.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Literal
from urllib.parse import quote, unquote

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betaln, expit, logit  # type: ignore[import-untyped, unused-ignore]

FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.intp]

_BEST_DRAWS = 4000


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


# The contextual models.

# Context fields in key order: a logistic model's features.
FIELDS = tuple(_KEY_NAMES)

# A field and its value in a context, as in keys (None as ""); None for the template as a whole.
Level = tuple[str, str | None]

ModelKind = Literal["logistic", "nested"]


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
    # `logistic`: Bayesian logistic regression with variant x feature interactions (the default);
    # `nested`: the nested hierarchical Beta-Binomial model it replaced, kept for comparison.
    model: ModelKind = "logistic"
    # Logistic model: prior standard deviations on the log-odds scale (at rates of a few per cent,
    # about the log of the rate). A context's own level (every variant alike) may move the rate
    # by a factor of e; a variant may be some 1.6 times better or worse than the others
    # everywhere; its extra appeal in one stage, category, channel or hour band is shrunk harder,
    # because each is estimated from a share of the sends.
    main_scale: float = 1.0
    variant_scale: float = 0.5
    # The fields whose levels get a variant x level interaction.
    interactions: tuple[str, ...] = FIELDS
    # The interactions' scale per field by empirical Bayes, under a half-Cauchy hyperprior of
    # scale `interaction_prior_scale` within `interaction_bounds`; or, if not, `interaction_scale`
    # for every field.
    empirical_bayes: bool = True
    interaction_prior_scale: float = 0.25
    interaction_bounds: tuple[float, float] = (0.01, 1.0)
    interaction_scale: float = 0.25
    # Nested model: the range of a level's relative spread (how far a pool's rate may stray from
    # its parent's, as a share of it); the level's spread is estimated within it.
    spread_bounds: tuple[float, float] = (0.01, 1.0)


DEFAULT_SETTINGS = BanditSettings()


@dataclass(frozen=True, eq=False)
class ContextualModel(ABC):
    """A template's fitted posterior of every variant's rate in every context.

    `None` in place of a context stands for the template as a whole, before any evidence.
    """

    variants: tuple[str, ...]
    # Context key -> its sends (discounted) over all variants.
    traffic: Mapping[str, float]

    @abstractmethod
    def rate_means(self, contexts: Sequence[Context | None]) -> FloatArray:
        """The posterior mean rate of each variant in each context (context x variant)."""

    @abstractmethod
    def sample_rates(
        self, contexts: Sequence[Context | None], draws: int, rng: np.random.Generator
    ) -> FloatArray:
        """Joint posterior draws of the variants' rates, per context (draw x context x variant)."""

    def posterior_means(self, context: Context) -> dict[str, float]:
        """The posterior mean rate of each variant in the context."""
        return dict(zip(self.variants, self.rate_means([context])[0].tolist(), strict=True))


def fit(
    evidence: Evidence, variants: Sequence[str], settings: BanditSettings = DEFAULT_SETTINGS
) -> ContextualModel:
    """The posterior of every variant's rate in every context, by `settings.model`.

    Rows of variants not in `variants` are ignored (a variant since removed from the template).
    """
    if not variants:
        raise ValueError("a template has at least one variant")
    if not set(settings.interactions) <= set(FIELDS):
        raise ValueError(f"interactions are with fields of {FIELDS}: {settings.interactions}")
    if settings.model == "nested":
        return fit_nested(evidence, variants, settings)
    return fit_logistic(evidence, variants, settings)


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


def _traffic(keys: Sequence[str], trials: FloatArray) -> dict[str, float]:
    return dict(zip(keys, trials.sum(axis=1).tolist(), strict=True))


# The logistic model: Bayesian logistic regression, Laplace posterior (Chapelle and Li, 2011).

# Newton steps are few: the penalised log-likelihood is concave and smooth.
_NEWTON_STEPS = 50
_NEWTON_TOLERANCE = 1e-8
_MAX_HALVINGS = 30
# The intercept's prior is wide enough to say nothing about the template's base rate.
_INTERCEPT_SCALE = 10.0
# Coefficients in a variant's logit: intercept, a main effect per field, the variant's own
# intercept, an interaction per field.
_TERMS = 2 + 2 * len(FIELDS)
# Empirical Bayes: scales tried per field, and sweeps over the fields (each field's scale is
# estimated with the others held, so a second sweep lets them settle together). Then the mode is
# found again, and the scales estimated once more at the new mode's curvature.
_SCALE_GRID = 17
_SCALE_SWEEPS = 2
_EB_ROUNDS = 2
# Added to a logit covariance before its Cholesky factor, against rounding.
_JITTER = 1e-10


@dataclass(frozen=True)
class Design:
    """The columns of the logistic model: which coefficients make a variant's logit in a context.

    logit θ_vc = intercept + Σ_f main[f, c_f] + variant[v] + Σ_f interaction[v, f, c_f], one
    coefficient per level of each field seen in the evidence (interactions for the fields of
    `BanditSettings.interactions` only). A level never seen (a new category, say) has no column:
    its coefficients are still at their prior, which `LogisticModel` adds to the logits'
    variance.
    """

    variants: int
    # (field, value) -> index among the main effects; values as in keys, None as "".
    levels: Mapping[Level, int]
    # (field, value) -> index among one variant's interactions, for the fields that have them.
    interacting: Mapping[Level, int]

    @classmethod
    def of(cls, contexts: Sequence[Context], variants: int, fields: Sequence[str]) -> Design:
        seen = sorted({(field, _value(c, field)) for c in contexts for field in FIELDS})
        shared = [level for level in seen if level[0] in fields]
        return cls(
            variants,
            {level: index for index, level in enumerate(seen)},
            {level: index for index, level in enumerate(shared)},
        )

    @property
    def size(self) -> int:
        """The number of coefficients; also the index of the zero column of a level not seen."""
        return 1 + len(self.levels) + self.variants * self._width

    @property
    def _width(self) -> int:
        """One variant's coefficients: its own intercept and its interactions."""
        return 1 + len(self.interacting)

    def prior_precision(
        self, main_scale: float, variant_scale: float, interaction_scales: Mapping[str, float]
    ) -> FloatArray:
        """1 / prior variance of every coefficient, in column order."""
        per_level = [interaction_scales[field] for field, _ in self.interacting]
        own = [variant_scale, *per_level]
        scales = [_INTERCEPT_SCALE] + [main_scale] * len(self.levels) + own * self.variants
        precision: FloatArray = 1.0 / np.square(np.asarray(scales))
        return precision

    def interaction_columns(self, field: str) -> IndexArray:
        """The columns of every variant's interactions with the levels of `field`."""
        first = 1 + len(self.levels) + self._width * np.arange(self.variants)
        own = [1 + index for (name, _), index in self.interacting.items() if name == field]
        columns: IndexArray = (first[:, None] + np.asarray(own, dtype=np.intp)).ravel()
        return columns

    def columns(self, contexts: Sequence[Context | None]) -> tuple[IndexArray, FloatArray]:
        """Per context and variant the columns of its logit (context x variant x term), `size`
        for a level not seen; and per context which of its fields have a level not seen (context
        x field, 1 or 0)."""
        columns, unseen = [], []
        for context in contexts:
            levels = [(field, _value(context, field)) for field in FIELDS]
            columns.append(self._context_columns(levels))
            unseen.append([float(level not in self.levels) for level in levels])
        return (
            np.asarray(columns, dtype=np.intp).reshape(len(contexts), self.variants, _TERMS),
            np.asarray(unseen, dtype=np.float64).reshape(len(contexts), len(FIELDS)),
        )

    def _context_columns(self, levels: Sequence[Level]) -> list[list[int]]:
        """The columns of each variant's logit in a context with these levels (variant x term).

        Plain lists: this runs for every context of every request, and numpy's overhead on a
        dozen numbers would dominate.
        """
        missing = self.size
        shared = [0, *(1 + self.levels[key] if key in self.levels else missing for key in levels)]
        offsets = [1 + self.interacting[key] if key in self.interacting else None for key in levels]
        rows = []
        for variant in range(self.variants):
            first = 1 + len(self.levels) + self._width * variant
            own = [first, *(missing if o is None else first + o for o in offsets)]
            rows.append(shared + own)
        return rows


def _value(context: Context | None, field: str) -> str | None:
    """A context's level of a field as in its key (None as ""); None for no context at all."""
    return (getattr(context, field) or "") if context is not None else None


@dataclass(frozen=True, eq=False)
class LogisticModel(ContextualModel):
    """The Laplace posterior of the logistic model: N(mode, covariance) on the coefficients.

    A variant's logit in a context is a sum of coefficients, so its posterior is Gaussian too,
    and the variants' logits in one context are drawn jointly from their V x V covariance: a
    draw per send is a few dozen numbers, not a draw of every coefficient.
    """

    design: Design
    mode: FloatArray
    covariance: FloatArray
    # The prior variance of a level's main effect, and per field of `FIELDS` that of a variant's
    # interaction with one of its levels (0 without interactions): what a level never seen adds
    # to the logits' covariance.
    main_variance: float
    interaction_variances: tuple[float, ...]

    @property
    def interaction_scales(self) -> dict[str, float]:
        """Per field with interactions, the prior scale of a variant's interaction with a level."""
        return {
            field: math.sqrt(variance)
            for field, variance in zip(FIELDS, self.interaction_variances, strict=True)
            if variance > 0
        }

    def logit_moments(self, contexts: Sequence[Context | None]) -> tuple[FloatArray, FloatArray]:
        """Per context the posterior mean (context x variant) and covariance (context x variant
        x variant) of the variants' logits."""
        columns, unseen = self.design.columns(contexts)
        # The extra zero column stands for the levels not seen, whose prior is added below.
        mode = np.append(self.mode, 0.0)
        covariance = np.pad(self.covariance, ((0, 1), (0, 1)))
        mean: FloatArray = mode[columns].sum(axis=2)
        rows, cols = columns[:, :, None, :, None], columns[:, None, :, None, :]
        spread: FloatArray = covariance[rows, cols].sum(axis=(3, 4))
        # Each level not seen adds its main effect (shared by the variants) and the variant's
        # own interaction (independent between variants).
        shared = self.main_variance * unseen.sum(axis=1)
        own = unseen @ np.asarray(self.interaction_variances)
        spread += shared[:, None, None] + own[:, None, None] * np.eye(len(self.variants))
        return mean, spread

    def rate_means(self, contexts: Sequence[Context | None]) -> FloatArray:
        # MacKay's probit approximation of E[sigmoid(x)], x ~ N(mean, variance).
        mean, spread = self.logit_moments(contexts)
        variance = np.diagonal(spread, axis1=1, axis2=2)
        means: FloatArray = expit(mean / np.sqrt(1.0 + np.pi * variance / 8.0))
        return means

    def sample_rates(
        self, contexts: Sequence[Context | None], draws: int, rng: np.random.Generator
    ) -> FloatArray:
        mean, spread = self.logit_moments(contexts)
        factor = np.linalg.cholesky(spread + _JITTER * np.eye(len(self.variants)))
        # Per context, noise (draw x variant) times the factor's transpose: one batched product.
        noise = rng.standard_normal((mean.shape[0], draws, mean.shape[1]))
        logits = mean[:, None, :] + noise @ factor.transpose(0, 2, 1)
        rates: FloatArray = expit(logits.transpose(1, 0, 2))
        return rates


def fit_logistic(
    evidence: Evidence, variants: Sequence[str], settings: BanditSettings = DEFAULT_SETTINGS
) -> LogisticModel:
    """Bayesian logistic regression on the counts, with its Laplace posterior.

    The aggregated counts are binomial observations of their row's logit (weights: the
    discounted trials), the Gaussian prior is a ridge penalty, the mode is found by Newton's
    method, and the posterior covariance is the inverse Hessian at the mode (Chapelle and Li,
    2011, with the full covariance since the coefficients are few). With empirical Bayes, the
    interactions' prior scales are then estimated per field and the mode found again.
    """
    keys, trials, successes = _evidence_arrays(evidence, variants)
    contexts = [Context.from_key(key) for key in keys]
    design = Design.of(contexts, len(variants), settings.interactions)
    columns, _ = design.columns(contexts)
    sent = trials.ravel() > 0
    scales = dict.fromkeys(settings.interactions, _initial_scale(settings))
    regression = _Regression(
        columns.reshape(-1, _TERMS)[sent],
        trials.ravel()[sent],
        successes.ravel()[sent],
        design.prior_precision(settings.main_scale, settings.variant_scale, scales),
    )
    mode, hessian = regression.mode()
    for _ in range(_EB_ROUNDS if settings.empirical_bayes and sent.any() else 0):
        scales = _estimate_scales(design, regression.precision, mode, hessian, settings)
        regression = replace(
            regression,
            precision=design.prior_precision(settings.main_scale, settings.variant_scale, scales),
        )
        mode, hessian = regression.mode(start=mode)
    covariance = np.linalg.inv(hessian)
    return LogisticModel(
        variants=tuple(variants),
        traffic=_traffic(keys, trials),
        design=design,
        mode=mode,
        covariance=(covariance + covariance.T) / 2.0,
        main_variance=settings.main_scale**2,
        interaction_variances=tuple(scales.get(field, 0.0) ** 2 for field in FIELDS),
    )


def _initial_scale(settings: BanditSettings) -> float:
    """The interactions' prior scale before any estimate: the fixed one, or with empirical Bayes
    sqrt(E[s²]) under the hyperprior on `interaction_bounds`."""
    if not settings.empirical_bayes:
        return settings.interaction_scale
    grid = np.geomspace(*settings.interaction_bounds, _SCALE_GRID)
    weights = np.exp(_log_hyperprior(grid, settings.interaction_prior_scale))
    return float(np.sqrt(weights @ np.square(grid) / weights.sum()))


def _estimate_scales(
    design: Design,
    precision: FloatArray,
    mode: FloatArray,
    hessian: FloatArray,
    settings: BanditSettings,
) -> dict[str, float]:
    """Each field's interaction scale s by empirical Bayes, from the Laplace marginal likelihood.

    The likelihood is taken as the Gaussian of the fit (its curvature at the mode), so that the
    marginal likelihood of any prior precision is closed-form. s has a half-Cauchy hyperprior
    (Gelman, 2006) within `interaction_bounds`, evaluated on a grid one field at a time (the
    others held at their current value), and the scale kept is sqrt(E[s²]): with little evidence
    it stays wide, where the most likely s often says "no interaction" and starves a variant
    that wins only for some customers. Under a log-uniform hyperprior, with half its mass below
    0.1, the stage's scale fell to 0.06 in some runs of the simulator (the truth's is 0.10).
    """
    data_precision = hessian - np.diag(precision)
    linear = hessian @ mode
    grid = np.geomspace(*settings.interaction_bounds, _SCALE_GRID)
    precision = precision.copy()
    scales = {field: _initial_scale(settings) for field in settings.interactions}
    for _ in range(_SCALE_SWEEPS):
        for field in settings.interactions:
            columns = design.interaction_columns(field)
            if not columns.size:
                continue
            log_evidence = _log_evidence(data_precision, precision, linear, columns, grid)
            log_posterior = log_evidence + _log_hyperprior(grid, settings.interaction_prior_scale)
            weights = np.exp(log_posterior - log_posterior.max())
            scales[field] = float(np.sqrt(weights @ np.square(grid) / weights.sum()))
            precision[columns] = 1.0 / scales[field] ** 2
    return scales


def _log_hyperprior(grid: FloatArray, scale: float) -> FloatArray:
    """The log weight of each point of a log-spaced grid under the half-Cauchy(0, scale)
    hyperprior: its density times the point (the grid's Jacobian), up to a constant."""
    weights: FloatArray = np.log(grid) - np.log1p(np.square(grid / scale))
    return weights


def _log_evidence(
    data_precision: FloatArray,
    precision: FloatArray,
    linear: FloatArray,
    columns: IndexArray,
    grid: FloatArray,
) -> FloatArray:
    """The log marginal likelihood, up to a constant, of each prior scale s of `grid` for the
    coefficients of `columns`, the other coefficients keeping their prior `precision`.

    With the likelihood exp(-b'Db/2 + h'b) and the prior N(0, diag(1/λ)) it is
    (Σ log λ - log|D + diag λ| + h'(D + diag λ)⁻¹h) / 2. Split into the group g of `columns`
    (λ = τ = 1/s²) and the rest r: with A = D + diag λ on r, the Schur complement
    S = D_gg - D_gr A⁻¹ D_rg = Q diag(e) Q' and u = h_g - D_gr A⁻¹ h_r, it is, but for terms
    that do not depend on τ, (m log τ - Σ log(e + τ) + Σ (Q'u)² / (e + τ)) / 2: one small
    eigendecomposition per field instead of a factorisation per scale tried.
    """
    rest = np.setdiff1d(np.arange(linear.size), columns)
    rest_matrix = data_precision[np.ix_(rest, rest)] + np.diag(precision[rest])
    cross = data_precision[np.ix_(columns, rest)]
    solved = np.linalg.solve(rest_matrix, np.column_stack([cross.T, linear[rest]]))
    schur = data_precision[np.ix_(columns, columns)] - cross @ solved[:, :-1]
    values, vectors = np.linalg.eigh((schur + schur.T) / 2.0)
    values = np.maximum(values, 0.0)[None, :]
    projected = np.square(vectors.T @ (linear[columns] - cross @ solved[:, -1]))
    tau = 1.0 / np.square(grid)[:, None]
    evidence: FloatArray = 0.5 * (
        columns.size * np.log(tau[:, 0])
        - np.log(values + tau).sum(axis=1)
        + (projected / (values + tau)).sum(axis=1)
    )
    return evidence


@dataclass(frozen=True)
class _Regression:
    """The log posterior of the coefficients: binomial log-likelihood of the counts of each row
    (context x variant) plus the Gaussian prior's ridge penalty.

    The design matrix is one-hot, so it is kept as each row's columns (the index `size` for
    none) and its products are sums by index: no dense matrix, and no multithreaded BLAS call,
    whose threads cost more than these small products (several times more on shared cores).
    """

    columns: IndexArray
    trials: FloatArray
    successes: FloatArray
    precision: FloatArray

    def mode(self, start: FloatArray | None = None) -> tuple[FloatArray, FloatArray]:
        """The mode and the negative Hessian there (the Laplace posterior's precision).

        Newton's method with step halving: the objective is strictly concave, and halving keeps
        a step from far away from overshooting.
        """
        if start is None:
            # The template's overall rate (a logit of -3 or -4), so that the steps are short.
            start = np.zeros(self.precision.size)
            start[0] = logit((self.successes.sum() + 0.5) / (self.trials.sum() + 1.0))
        coefficients = start
        for _ in range(_NEWTON_STEPS):
            gradient, hessian = self.derivatives(coefficients)
            step = np.asarray(np.linalg.solve(hessian, gradient), dtype=np.float64)
            coefficients = self._halved_until_better(coefficients, step)
            if np.max(np.abs(step)) < _NEWTON_TOLERANCE:
                break
        return coefficients, self.derivatives(coefficients)[1]

    def derivatives(self, coefficients: FloatArray) -> tuple[FloatArray, FloatArray]:
        """The gradient of the log posterior and the negative of its Hessian."""
        rates = expit(self._logits(coefficients))
        residuals = self.successes - self.trials * rates
        gradient = self._sum_by_column(residuals) - self.precision * coefficients
        size = self.precision.size
        # X'WX: each row adds its weight to every pair of its columns.
        pairs = self.columns[:, :, None] * (size + 1) + self.columns[:, None, :]
        weights = np.broadcast_to((self.trials * rates * (1.0 - rates))[:, None, None], pairs.shape)
        sums = np.bincount(pairs.ravel(), weights.ravel(), minlength=(size + 1) ** 2)
        hessian: FloatArray = sums.reshape(size + 1, size + 1)[:size, :size].astype(np.float64)
        return gradient, hessian + np.diag(self.precision)

    def log_posterior(self, coefficients: FloatArray) -> float:
        logits = self._logits(coefficients)
        likelihood = self.successes @ logits - self.trials @ np.logaddexp(0.0, logits)
        return float(likelihood - 0.5 * self.precision @ np.square(coefficients))

    def _logits(self, coefficients: FloatArray) -> FloatArray:
        logits: FloatArray = np.append(coefficients, 0.0)[self.columns].sum(axis=1)
        return logits

    def _sum_by_column(self, values: FloatArray) -> FloatArray:
        """X'v: each row's value added to each of its columns."""
        size = self.precision.size
        spread = np.broadcast_to(values[:, None], self.columns.shape)
        sums = np.bincount(self.columns.ravel(), spread.ravel(), minlength=size + 1)
        return sums[:size].astype(np.float64)

    def _halved_until_better(self, coefficients: FloatArray, step: FloatArray) -> FloatArray:
        before = self.log_posterior(coefficients)
        for _ in range(_MAX_HALVINGS):
            moved: FloatArray = coefficients + step
            if self.log_posterior(moved) >= before:
                return moved
            step = step / 2.0
        return coefficients


# The nested model: hierarchical Beta-Binomial pools (BDA, chapter 5).

# Values of a level's relative spread tried, log-spaced within `BanditSettings.spread_bounds`.
_SPREAD_GRID = 41


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
class NestedModel(ContextualModel):
    """The fitted posteriors of every pool of a template."""

    # Pool key (`TEMPLATE_POOL`, or a key of some level of `POOL_LEVELS`) -> its posterior.
    pools: Mapping[str, PoolPosterior]
    # Per level of `POOL_LEVELS`, each variant's relative spread (empirical Bayes).
    spreads: tuple[FloatArray, ...]

    def posterior(self, context: Context | None) -> PoolPosterior:
        """The context's posterior; for a context without evidence, its deepest known pool's."""
        keys = (TEMPLATE_POOL, *(context.pool_keys if context is not None else ()))
        depth = max(level for level, key in enumerate(keys) if key in self.pools)
        found = self.pools[keys[depth]]
        alpha, beta = found.alpha, found.beta
        # Each level without evidence of its own widens the prior by that level's spread.
        for spread in self.spreads[depth:]:
            alpha, beta = _child_prior(alpha, beta, spread)
        return PoolPosterior(alpha, beta, found.lift)

    def rate_means(self, contexts: Sequence[Context | None]) -> FloatArray:
        return np.asarray([self.posterior(context).means for context in contexts])

    def sample_rates(
        self, contexts: Sequence[Context | None], draws: int, rng: np.random.Generator
    ) -> FloatArray:
        posteriors = [self.posterior(context) for context in contexts]
        alpha = np.asarray([p.alpha for p in posteriors])
        beta = np.asarray([p.beta for p in posteriors])
        lift = np.asarray([p.lift for p in posteriors])[:, None]
        rates: FloatArray = lift * rng.beta(alpha, beta, size=(draws, *alpha.shape))
        return rates


def fit_nested(
    evidence: Evidence, variants: Sequence[str], settings: BanditSettings = DEFAULT_SETTINGS
) -> NestedModel:
    """The posteriors of every pool, with each level's spread by empirical Bayes.

    First the base rate of every pool (all variants together) is pooled down the levels; then
    each variant's rate, standardised by its context's base rate so that the spread measured at a
    level is the variants' different taste there, not that some contexts click more than others.
    """
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
    return NestedModel(tuple(variants), _traffic(keys, trials), pools, tuple(spreads))


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
    variants = len(model.variants)
    if promoted:
        return _promoted_probabilities(model.rate_means(contexts), settings.exploration_floor)
    if variants == 1:
        return np.ones((len(contexts), 1))
    wins = _win_counts(model.sample_rates(contexts, settings.draws, rng))
    return (wins + 0.5) / (settings.draws + 0.5 * variants)


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
    keys = [key for key, sent in model.traffic.items() if sent > 0]
    # No evidence yet: the template as a whole stands for every context.
    contexts: list[Context | None] = [Context.from_key(key) for key in keys] or [None]
    traffic = np.asarray([model.traffic[key] for key in keys] or [1.0])
    means = model.rate_means(contexts)
    leader = means.argmax(axis=1)
    draws = model.sample_rates(contexts, settings.draws, rng)
    leader_value = traffic * means[np.arange(len(contexts)), leader]
    value_remaining = _value_remaining(draws, leader, leader_value, settings.value_quantile)
    wins = _win_counts(draws) / settings.draws
    # Bonferroni: P(all leaders best) >= 1 - sum of P(a leader is not best).
    probability_optimal = max(
        0.0, 1.0 - float(np.sum(1.0 - wins[np.arange(len(contexts)), leader]))
    )
    share = traffic / traffic.sum()
    return Evaluation(
        promoted=_stays_promoted(promoted, value_remaining, probability_optimal, settings),
        value_remaining=value_remaining,
        probability_optimal=probability_optimal,
        probability_best=dict(zip(model.variants, (share @ wins).tolist(), strict=True)),
        leaders={
            key: model.variants[index]
            for key, index in zip(keys or [TEMPLATE_POOL], leader, strict=True)
        },
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

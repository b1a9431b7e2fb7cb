"""Simulator scenario: the contextual variant bandit against uniform, context-blind and oracle.

A planted truth gives each variant a click rate per context (lifecycle stage, top category, hour
band; one channel, since a template has one), so that the best variant differs by stage and its
margin a little by category (the category never changes the winner); the contexts' mix makes
some of them thin. Every simulated batch (a few per day, as the service reads its evidence)
draws the contexts of its sends; each policy picks a variant per send and one uniform draw per
send decides the click for all of them (common random numbers), so their differences are not
noise between separate samples. Then each policy learns from its own clicks. The policies:
uniform random, today's context-blind Thompson sampling (`choose_variant`), the contextual
bandit with decay, Scott's stopping rule and promotion (services/content/bandit.py; its model by
`BanditSettings.model`), and the oracle that knows the best variant of every context.

Click rates are scored with the truth's rate of the variant chosen (the expected click), so a
figure is not blurred by the click draws; the bandits learn from the drawn clicks only.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from bench.decisions.result import Curve, Figure, ScenarioResult
from services.content.bandit import (
    DEFAULT_HALF_LIFE_DAYS,
    DEFAULT_SETTINGS,
    BanditSettings,
    Context,
    ContextualModel,
    Counts,
    LogisticModel,
    NestedModel,
    PolicyValue,
    VariantStats,
    choice_probabilities,
    choose_variant,
    decay,
    evaluate,
    fit,
    ips_estimate,
)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]

ORACLE_SHARE_TARGET = 0.95
# The logged propensities work if IPS lands within two standard errors of the true value.
IPS_ERROR_TARGET = 2.0


@dataclass(frozen=True)
class World:
    """The planted truth: every context, its share of sends, each variant's click rate in it."""

    variants: tuple[str, ...]
    contexts: list[Context]
    shares: FloatArray
    rates: FloatArray

    @property
    def best(self) -> IntArray:
        """Each context's best variant."""
        best: IntArray = self.rates.argmax(axis=1)
        return best


class Policy(Protocol):
    """A way to pick variants for a batch of sends, then learn from their clicks."""

    def choose(self, contexts: IntArray) -> IntArray: ...

    def learn(self, contexts: IntArray, chosen: IntArray, clicked: FloatArray) -> None: ...


@dataclass
class Uniform:
    """Every variant equally likely, always."""

    variants: int
    rng: np.random.Generator

    def choose(self, contexts: IntArray) -> IntArray:
        return self.rng.integers(0, self.variants, size=contexts.size).astype(np.intp)

    def learn(self, contexts: IntArray, chosen: IntArray, clicked: FloatArray) -> None:
        """Nothing to learn."""


@dataclass
class Oracle:
    """The truth's best variant of every context."""

    best: IntArray

    def choose(self, contexts: IntArray) -> IntArray:
        return self.best[contexts]

    def learn(self, contexts: IntArray, chosen: IntArray, clicked: FloatArray) -> None:
        """Nothing to learn."""


@dataclass
class ContextBlind:
    """Today's service: Thompson sampling on each variant's totals, whatever the context."""

    variants: tuple[str, ...]
    rng: random.Random
    trials: FloatArray = field(init=False)
    successes: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        self.trials = np.zeros(len(self.variants))
        self.successes = np.zeros(len(self.variants))

    def choose(self, contexts: IntArray) -> IntArray:
        stats = [
            VariantStats(variant, int(trials), float(successes))
            for variant, trials, successes in zip(
                self.variants, self.trials, self.successes, strict=True
            )
        ]
        index = {variant: column for column, variant in enumerate(self.variants)}
        picks = [index[choose_variant(stats, self.rng).variant_id] for _ in range(contexts.size)]
        return np.asarray(picks, dtype=np.intp)

    def learn(self, contexts: IntArray, chosen: IntArray, clicked: FloatArray) -> None:
        np.add.at(self.trials, chosen, 1.0)
        np.add.at(self.successes, chosen, clicked)


@dataclass
class Contextual:
    """The contextual bandit as the service would run it: decayed evidence per (context,
    variant) and a refit after every batch, Scott's evaluation once a day (a daily job, which
    would emit the insight), the promotion kept in between."""

    world: World
    rng: np.random.Generator
    batches_per_day: int
    settings: BanditSettings = DEFAULT_SETTINGS
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS
    evidence: dict[tuple[str, str], Counts] = field(default_factory=dict)
    promoted: bool = False
    # (day, promoted or lifted) at every change of the promotion.
    changes: list[tuple[int, bool]] = field(default_factory=list)
    propensities: list[FloatArray] = field(default_factory=list)
    value_remaining: list[float] = field(default_factory=list)
    batches: int = 0
    model: ContextualModel = field(init=False)

    def __post_init__(self) -> None:
        self.model = fit({}, self.world.variants, self.settings)

    def choose(self, contexts: IntArray) -> IntArray:
        seen, inverse = np.unique(contexts, return_inverse=True)
        probabilities = choice_probabilities(
            self.model,
            [self.world.contexts[index] for index in seen],
            self.rng,
            promoted=self.promoted,
            settings=self.settings,
        )[inverse]
        chosen = _sample_rows(probabilities, self.rng)
        self.propensities.append(probabilities[np.arange(contexts.size), chosen])
        return chosen

    def learn(self, contexts: IntArray, chosen: IntArray, clicked: FloatArray) -> None:
        self.evidence = decay(self.evidence, 1.0 / self.batches_per_day, self.half_life_days)
        shape = (len(self.world.contexts), len(self.world.variants))
        trials, successes = np.zeros(shape), np.zeros(shape)
        np.add.at(trials, (contexts, chosen), 1.0)
        np.add.at(successes, (contexts, chosen), clicked)
        for row, column in zip(*np.nonzero(trials), strict=True):
            key = (self.world.contexts[row].key, self.world.variants[column])
            old = self.evidence.get(key, Counts())
            self.evidence[key] = Counts(
                old.trials + trials[row, column], old.successes + successes[row, column]
            )
        self.model = fit(self.evidence, self.world.variants, self.settings)
        self.batches += 1
        if self.batches % self.batches_per_day == 0:
            self._evaluate(day=self.batches // self.batches_per_day)

    def _evaluate(self, day: int) -> None:
        evaluation = evaluate(self.model, self.rng, promoted=self.promoted, settings=self.settings)
        if evaluation.promoted != self.promoted:
            self.changes.append((day, evaluation.promoted))
        self.promoted = evaluation.promoted
        self.value_remaining.append(evaluation.value_remaining)


@dataclass
class Record:
    """Per policy and batch: each send's context, variant, true click rate, regret and click."""

    contexts: list[IntArray] = field(default_factory=list)
    expected: list[FloatArray] = field(default_factory=list)
    regret: list[FloatArray] = field(default_factory=list)
    clicked: list[FloatArray] = field(default_factory=list)
    chosen: list[IntArray] = field(default_factory=list)


def run(
    truth: Mapping[str, Any], seed: int, settings: BanditSettings = DEFAULT_SETTINGS
) -> ScenarioResult:
    """Plant the world, simulate the batches for the four policies, score them."""
    world = plant(truth)
    streams = np.random.default_rng(seed).spawn(3)
    per_day = int(truth["updates_per_day"])
    contextual = Contextual(world, streams[0], batches_per_day=per_day, settings=settings)
    policies: dict[str, Policy] = {
        "uniform random": Uniform(len(world.variants), streams[1]),
        "Thompson, no context": ContextBlind(world.variants, random.Random(seed)),
        "contextual bandit": contextual,
        "oracle": Oracle(world.best),
    }
    records = simulate(truth, world, policies, streams[2])
    return score(truth, world, records, contextual)


def plant(truth: Mapping[str, Any]) -> World:
    """Every (stage, category, band) with its share and each variant's rate, by the factors."""
    stages, categories, bands = truth["stages"], truth["categories"], truth["hour_bands"]
    variants = truth["variants"]
    contexts, shares, rates = [], [], []
    for stage, category, band in product(stages, categories, bands):
        contexts.append(Context(stage, category, str(truth["channel"]), band))
        shares.append(stages[stage]["share"] * categories[category]["share"] * bands[band]["share"])
        base = stages[stage]["click_rate"] * categories[category]["factor"] * bands[band]["factor"]
        rates.append(
            [
                base
                * variants[name].get("stages", {}).get(stage, 1.0)
                * variants[name].get("categories", {}).get(category, 1.0)
                for name in variants
            ]
        )
    share_array = np.asarray(shares, dtype=np.float64)
    return World(tuple(variants), contexts, share_array / share_array.sum(), np.asarray(rates))


def simulate(
    truth: Mapping[str, Any],
    world: World,
    policies: Mapping[str, Policy],
    rng: np.random.Generator,
) -> dict[str, Record]:
    """Every batch: its sends' contexts and click draws, then each policy chooses and learns."""
    records = {name: Record() for name in policies}
    batches = int(truth["days"]) * int(truth["updates_per_day"])
    per_batch = int(truth["sends_per_day"]) // int(truth["updates_per_day"])
    best_rate = world.rates[np.arange(len(world.contexts)), world.best]
    for _ in range(batches):
        contexts = rng.choice(len(world.contexts), size=per_batch, p=world.shares).astype(np.intp)
        draws = rng.random(per_batch)
        for name, policy in policies.items():
            chosen = policy.choose(contexts)
            expected = world.rates[contexts, chosen]
            clicked = (draws < expected).astype(np.float64)
            policy.learn(contexts, chosen, clicked)
            record = records[name]
            record.contexts.append(contexts)
            record.expected.append(expected)
            record.regret.append(best_rate[contexts] - expected)
            record.clicked.append(clicked)
            record.chosen.append(chosen)
    return records


def score(
    truth: Mapping[str, Any],
    world: World,
    records: Mapping[str, Record],
    contextual: Contextual,
) -> ScenarioResult:
    """Click rates, the contextual bandit against the oracle, the promotion, IPS of the oracle."""
    ratios = _oracle_ratios(records, float(truth["final_share"]))
    first_promotion = next((day for day, promoted in contextual.changes if promoted), -1)
    oracle_value = _oracle_value(world)
    estimate = _ips_of_oracle(world, records["contextual bandit"], contextual)
    figures = [
        *(
            Figure(f"click rate, {name}", 100.0 * _mean(record.expected), unit="%")
            for name, record in records.items()
        ),
        Figure(
            "contextual / oracle click rate, whole run",
            ratios["contextual bandit"]["whole run"],
            ORACLE_SHARE_TARGET,
        ),
        Figure(
            f"contextual / oracle click rate, last {truth['final_share']:.0%}",
            ratios["contextual bandit"]["final stretch"],
        ),
        Figure("first promotion (day; -1: never)", first_promotion),
        Figure("value remaining at the end (95th percentile)", contextual.value_remaining[-1]),
        Figure("oracle click rate, true", 100.0 * oracle_value, unit="%"),
        Figure("oracle click rate, IPS on the bandit's logs", 100.0 * estimate.ips, unit="%"),
        Figure("oracle click rate, SNIPS on the bandit's logs", 100.0 * estimate.snips, unit="%"),
        Figure(
            "IPS error (standard errors)",
            abs(estimate.ips - oracle_value) / estimate.standard_error,
            IPS_ERROR_TARGET,
            at_least=False,
        ),
    ]
    per_day = int(truth["updates_per_day"])
    curves = [
        Curve(name, _cumulative_by_day(record.regret, per_day))
        for name, record in records.items()
        if name != "oracle"
    ]
    return ScenarioResult(
        "bandit",
        figures,
        curves,
        x_label="day",
        y_label="cumulative regret (expected clicks)",
        details=_details(world, records, contextual, estimate, ratios),
    )


def _oracle_ratios(
    records: Mapping[str, Record], final_share: float
) -> dict[str, dict[str, float]]:
    """Each policy's expected clicks over the oracle's, on the whole run and its last stretch."""
    oracle = np.concatenate(records["oracle"].expected)
    final = int(oracle.size * (1.0 - final_share))
    ratios = {}
    for name, record in records.items():
        expected = np.concatenate(record.expected)
        ratios[name] = {
            "whole run": float(expected.sum() / oracle.sum()),
            "final stretch": float(expected[final:].sum() / oracle[final:].sum()),
        }
    return ratios


def _oracle_value(world: World) -> float:
    """The oracle's click rate over the context mix."""
    best_rate = world.rates[np.arange(len(world.contexts)), world.best]
    return float(world.shares @ best_rate)


def _ips_of_oracle(world: World, record: Record, contextual: Contextual) -> PolicyValue:
    """The oracle's value estimated from the contextual bandit's clicks and propensities."""
    contexts = np.concatenate(record.contexts)
    target = (np.concatenate(record.chosen) == world.best[contexts]).astype(np.float64)
    return ips_estimate(
        np.concatenate(record.clicked), np.concatenate(contextual.propensities), target
    )


def _details(
    world: World,
    records: Mapping[str, Record],
    contextual: Contextual,
    estimate: PolicyValue,
    ratios: Mapping[str, Mapping[str, float]],
) -> dict[str, Any]:
    thinnest = int(world.shares.argmin())
    sends = np.bincount(np.concatenate(records["oracle"].contexts), minlength=world.shares.size)
    return {
        "sends": int(sends.sum()),
        "contexts": len(world.contexts),
        "thinnest context": {"key": world.contexts[thinnest].key, "sends": int(sends[thinnest])},
        "share of sends in contexts with fewer than 300 sends": float(
            sends[sends < 300].sum() / sends.sum()
        ),
        "policy / oracle (expected clicks)": ratios,
        "realised click rate": {name: _mean(record.clicked) for name, record in records.items()},
        "promotion changes (day, promoted)": contextual.changes,
        "value remaining per day": contextual.value_remaining,
        "model": contextual.settings.model,
        **_model_details(contextual.model),
        "leaders right at the end (share of sends)": _leaders_right(world, contextual),
        "IPS of the oracle": {
            "ips": estimate.ips,
            "snips": estimate.snips,
            "standard error": estimate.standard_error,
            "true": _oracle_value(world),
        },
    }


def _model_details(model: ContextualModel) -> dict[str, Any]:
    """What the model estimated of how much the variants' appeal varies between contexts."""
    if isinstance(model, LogisticModel):
        return {"interaction scale per field at the end": model.interaction_scales}
    if isinstance(model, NestedModel):
        return {"relative spread per pool level at the end": [s.tolist() for s in model.spreads]}
    return {}


def _leaders_right(world: World, contextual: Contextual) -> float:
    """The share of sends whose context's leader (highest posterior mean) is its best variant."""
    leaders = contextual.model.rate_means(world.contexts).argmax(axis=1)
    return float(world.shares @ (leaders == world.best))


def _sample_rows(probabilities: FloatArray, rng: np.random.Generator) -> IntArray:
    """One column per row, drawn with that row's probabilities."""
    cumulative = probabilities.cumsum(axis=1)
    draws = rng.random(probabilities.shape[0]) * cumulative[:, -1]
    chosen: IntArray = (cumulative < draws[:, None]).sum(axis=1, dtype=np.intp)
    return chosen


def _cumulative_by_day(per_batch: Sequence[FloatArray], batches_per_day: int) -> list[float]:
    totals = np.asarray([values.sum() for values in per_batch])
    by_day = totals.reshape(-1, batches_per_day).sum(axis=1)
    return [float(total) for total in np.cumsum(by_day)]


def _mean(per_batch: Sequence[FloatArray]) -> float:
    return float(np.concatenate(per_batch).mean())

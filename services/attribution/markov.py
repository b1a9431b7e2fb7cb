"""The data-driven model: a first-order Markov chain over touch paths and its removal effects.

A path is the states (channels) a person touched, in order, ending in a conversion or not (a
null path). The chain's transition probabilities are the paths' observed step frequencies.
Removing a state sends every transition into it to the null end; the relative drop in the
chance to convert is that state's removal effect (Anderl, Becker, von Wangenheim & Schumann
2016), and its removal share the effect over the sum of the effects.

A conversion's credit is shared among the states on its path in proportion to per-state
weights, fitted so that each state's credit summed over the conversions is the conversions
times its removal share (`credit_weights`): the per-conversion credits then add up to the
totals the model reports per channel.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

START = "(start)"
CONVERSION = "(conversion)"
NULL = "(null)"

CREDIT_TOLERANCE = 1e-9
"""The credit fit stops once the summed credits are this fraction of the conversions away
from their targets, or once no conversion's credit moves by more than this in a step."""
CREDIT_MAX_STEPS = 2_000
"""The credit fit's cap: targets on the edge of what the paths allow are approached slowly
(the gap shrinking like 1/steps), and a report must answer. A step costs about 0.1 ms for a
few dozen sets of channels, so the cap bounds the fit near 0.2 s."""


@dataclass(frozen=True)
class Path:
    states: tuple[str, ...]
    converted: bool


@dataclass(frozen=True)
class StateEffect:
    state: str
    removal_effect: float = 0.0
    share: float = 0.0


@dataclass(frozen=True)
class MarkovResult:
    """A fitted chain: how many paths it saw, its chance to convert, each state's effect."""

    paths: int
    conversions: int
    conversion_probability: float
    effects: list[StateEffect]

    def effect_of(self, state: str) -> StateEffect:
        """The state's effect; a state the chain never saw has none."""
        return next((e for e in self.effects if e.state == state), StateEffect(state))

    def removal_effects(self) -> dict[str, float]:
        return {effect.state: effect.removal_effect for effect in self.effects}


Transitions = dict[str, dict[str, float]]


def transitions(paths: Iterable[Path]) -> Transitions:
    """Transition probabilities; consecutive repeats of a state are one visit.

    Collapsing repeats changes no chance to convert: from a state with a loop, where the
    person goes next once they leave it is what the chain without the loop says.
    """
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for path in paths:
        steps = [START, *_collapsed(path.states), CONVERSION if path.converted else NULL]
        for here, there in itertools.pairwise(steps):
            counts[here][there] += 1
    return {
        here: {there: n / sum(row.values()) for there, n in row.items()}
        for here, row in counts.items()
    }


def conversion_probability(chain: Transitions, removed: str | None = None) -> float:
    """The chance to reach the conversion from the start; a removed state leads to null.

    The absorption probabilities x solve (I - Q) x = r, Q the steps between the transient
    states and r their steps into the conversion. Every state of a fitted chain reaches an end
    (the last state of each path has a step into one), so I - Q is invertible.
    """
    states = [state for state in chain if state != removed]
    if START not in states:
        return 0.0
    index = {state: i for i, state in enumerate(states)}
    steps = np.zeros((len(states), len(states)))
    into_conversion = np.zeros(len(states))
    for state in states:
        for there, probability in chain[state].items():
            if there == CONVERSION:
                into_conversion[index[state]] += probability
            elif there in index:
                steps[index[state], index[there]] += probability
    reach = np.linalg.solve(np.eye(len(states)) - steps, into_conversion)
    return float(reach[index[START]])


def removal_effects(paths: Sequence[Path]) -> MarkovResult:
    """Each state's removal effect, 1 - P(convert without it) / P(convert), and its share of
    the effects' sum. Touchless converting paths count: the effects are then fractions of all
    the conversions, those no touch preceded included."""
    chain = transitions(paths)
    total = conversion_probability(chain)
    states = sorted({state for path in paths for state in path.states})
    effects = {
        # Never below 0: removing a state cannot raise the chance, whatever the rounding says.
        state: max(0.0, 1.0 - conversion_probability(chain, removed=state) / total)
        if total
        else 0.0
        for state in states
    }
    effect_sum = sum(effects.values())
    return MarkovResult(
        paths=len(paths),
        conversions=sum(1 for path in paths if path.converted),
        conversion_probability=total,
        effects=[
            StateEffect(state, effect, effect / effect_sum if effect_sum else 0.0)
            for state, effect in sorted(effects.items(), key=lambda item: (-item[1], item[0]))
        ],
    )


def shares(states: Sequence[str], weights: Mapping[str, float]) -> list[float]:
    """Each touch's share of one conversion, touches given by their states in path order.

    Each distinct state on the path earns its weight (`credit_weights`) over the sum of the
    distinct states' weights, however often it occurs (removing a channel removes all its
    touches at once, so more touches must not earn it more); its touches split that part
    equally. When no state on the path has a weight (states the chain never saw, or with no
    effect), the touches share equally.
    """
    if not states:
        return []
    counts = Counter(states)
    total = sum(weights.get(state, 0.0) for state in counts)
    if total <= 0:
        return [1.0 / len(states)] * len(states)
    return [weights.get(state, 0.0) / total / counts[state] for state in states]


@dataclass(frozen=True)
class CreditWeights:
    """The weights `shares` splits conversions by, and how near they bring each state's summed
    credit to its target, the credited conversions times its removal share."""

    weights: dict[str, float]
    """Per state on a converting path with a removal effect; the largest is 1."""
    targets: dict[str, float]
    credited: dict[str, float]
    """Each state's credit summed over the conversions, under the weights."""
    residual: float
    """Half the sum over the states of |credited - target|: the conversions' worth of credit
    that would have to move between states to meet the targets; 0 when they are met."""
    steps: int
    converged: bool
    """Whether the residual is within the tolerance, i.e. the targets are met."""


def credit_weights(
    paths: Sequence[Sequence[str]],
    removal_shares: Mapping[str, float],
    *,
    tolerance: float = CREDIT_TOLERANCE,
    max_steps: int = CREDIT_MAX_STEPS,
) -> CreditWeights:
    """Weights w such that, with a conversion split as w_c / (sum of w over the distinct states
    on its path), each state's credit over the paths (the converting paths' states) is its
    target: the number of paths with a touch times its removal share.

    The summed credits of the raw removal effects miss the shares: a state that shares its
    paths with states of large effect gets a small slice of each. Scaling each weight by
    target / summed credit until they agree is iterative proportional fitting of the
    path-by-state table (rows: each conversion sums to 1; columns: the targets), the MM step of
    Bradley-Terry-like choice models (Hunter 2004), started from the removal shares. Paths
    with no touch credit no state, so they count in no target. A state with no removal share
    earns nothing, but on a path where no state has one (split equally, as `shares` does).
    When the targets cannot be met (a state alone on more paths than its target, a state on
    fewer paths than its target, a state with a share on no converting path), the fit stops
    where the credits stop moving, the residual saying how far off they remain.
    """
    touched = [states for states in paths if states]
    targets = {state: len(touched) * share for state, share in removal_shares.items()}
    sharing = [frozenset(s for s in states if removal_shares.get(s, 0.0) > 0) for states in touched]
    fitted = _fit(Counter(s for s in sharing if s), targets, removal_shares, tolerance, max_steps)
    credited = dict(fitted.credited)
    for states in (states for states, kept in zip(touched, sharing, strict=True) if not kept):
        # No state on the path has a share: `shares` splits it equally, out of the fit's reach.
        for state, part in zip(states, shares(states, {}), strict=True):
            credited[state] = credited.get(state, 0.0) + part
    residual = _residual(credited, targets)
    converged = residual <= tolerance * max(1, len(touched))
    return CreditWeights(fitted.weights, targets, credited, residual, fitted.steps, converged)


def _residual(credited: Mapping[str, float], targets: Mapping[str, float]) -> float:
    """Half the L1 gap: what is missing on some states is the excess on others, counted once."""
    states = credited.keys() | targets.keys()
    return 0.5 * sum(abs(credited.get(s, 0.0) - targets.get(s, 0.0)) for s in states)


@dataclass(frozen=True)
class _Fitted:
    weights: dict[str, float]
    credited: dict[str, float]
    steps: int


def _fit(
    sets: Counter[frozenset[str]],
    targets: Mapping[str, float],
    start: Mapping[str, float],
    tolerance: float,
    max_steps: int,
) -> _Fitted:
    """The proportional fit over the paths grouped by their set of states with a share (the
    split depends on nothing else, so a range's thousands of paths are a few dozen rows)."""
    if not sets:
        return _Fitted({}, {}, 0)
    table = _Table.of(sets)
    conversions = float(table.counts.sum())
    wanted = np.array([targets[state] for state in table.states])
    # A step is blind to the targets' scale: it meets them scaled to the conversions it splits.
    # They differ only when part of the targets is out of reach (see `credit_weights`).
    wanted *= conversions / wanted.sum()
    log_weights = np.log(np.array([start[state] for state in table.states]))
    previous: FloatArray | None = None
    steps = 0
    while True:
        log_totals, parts = table.parts(log_weights)
        credited = table.counts @ parts
        met = 0.5 * np.abs(credited - wanted).sum() <= tolerance * conversions
        still = previous is not None and np.abs(parts - previous).max() <= tolerance
        if met or still or steps == max_steps:
            break
        log_weights, previous, steps = table.step(log_totals, np.log(wanted)), parts, steps + 1
    # Floored so that a state that lost nearly everything keeps its sliver in `shares`
    # instead of turning its paths over to the equal split of weightless paths.
    weights = np.maximum(np.exp(log_weights - log_weights.max()), np.finfo(np.float64).tiny)
    return _Fitted(
        dict(zip(table.states, weights.tolist(), strict=True)),
        dict(zip(table.states, credited.tolist(), strict=True)),
        steps,
    )


@dataclass(frozen=True)
class _Table:
    """Groups of paths (rows) by the states (columns) with a share on them, and their sizes."""

    states: list[str]
    member: BoolArray
    """Where the group's paths hold the state."""
    counts: FloatArray

    @classmethod
    def of(cls, sets: Counter[frozenset[str]]) -> _Table:
        states = sorted(frozenset[str]().union(*sets))
        groups = list(sets)
        member = np.array([[state in group for state in states] for group in groups], bool)
        return cls(states, member, np.array([sets[group] for group in groups], float))

    def parts(self, log_weights: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Each group's log total weight, and each state's part of one of its conversions."""
        log_totals = self._logsumexp(np.broadcast_to(log_weights, self.member.shape), axis=1)
        # Masked before exp: a non-member's weight may exceed the group's total by any factor.
        relative = np.where(self.member, log_weights - log_totals[:, None], -np.inf)
        return log_totals, np.exp(relative)

    def step(self, log_totals: FloatArray, log_targets: FloatArray) -> FloatArray:
        """w_c <- w_c * target_c / credited_c, which is target_c / sum over c's groups of
        count / total weight. In logs, because in an unmeetable fit some weights fall without
        bound against the others."""
        pulls = np.broadcast_to((np.log(self.counts) - log_totals)[:, None], self.member.shape)
        log_weights = log_targets - self._logsumexp(pulls, axis=0)
        # Only ratios matter; the largest weight held at 1 keeps the logs from drifting.
        shifted: FloatArray = log_weights - log_weights.max()
        return shifted

    def _logsumexp(self, values: FloatArray, axis: int) -> FloatArray:
        """log sum exp over the members only; every group and every state has one, so the
        largest member is finite. (scipy's costs more than the whole step on tables this size.)"""
        masked = np.where(self.member, values, -np.inf)
        top = masked.max(axis=axis, keepdims=True)
        summed: FloatArray = top + np.log(np.exp(masked - top).sum(axis=axis, keepdims=True))
        return summed.squeeze(axis)


def _collapsed(states: Sequence[str]) -> list[str]:
    return [state for i, state in enumerate(states) if i == 0 or states[i - 1] != state]

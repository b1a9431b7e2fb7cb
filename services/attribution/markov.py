"""The data-driven model: a first-order Markov chain over touch paths and its removal effects.

A path is the states (channels) a person touched, in order, ending in a conversion or not (a
null path). The chain's transition probabilities are the paths' observed step frequencies.
Removing a state sends every transition into it to the null end; the relative drop in the
chance to convert is that state's removal effect (Anderl, Becker, von Wangenheim & Schumann
2016). A conversion's credit is shared among the states on its path in proportion to their
removal effects.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

START = "(start)"
CONVERSION = "(conversion)"
NULL = "(null)"


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


def shares(states: Sequence[str], effects: Mapping[str, float]) -> list[float]:
    """Each touch's share of one conversion, touches given by their states in path order.

    Each distinct state on the path earns its removal effect over the sum of the distinct
    states' effects, however often it occurs (removing a channel removes all its touches at
    once, so more touches must not earn it more); its touches split that part equally. When
    no state on the path has an effect (states the chain never saw), the touches share
    equally.
    """
    if not states:
        return []
    counts = Counter(states)
    total = sum(effects.get(state, 0.0) for state in counts)
    if total <= 0:
        return [1.0 / len(states)] * len(states)
    return [effects.get(state, 0.0) / total / counts[state] for state in states]


def _collapsed(states: Sequence[str]) -> list[str]:
    return [state for i, state in enumerate(states) if i == 0 or states[i - 1] != state]

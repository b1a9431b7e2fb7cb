"""The data-driven model: a first-order Markov chain over touch paths and its removal effects.

A path is one profile's touches (channels, journeys or variants) up to a conversion, or up to
now when it has not converted (again). Removing a state sends every transition into it to the
null end; the drop in the chance to convert is that state's removal effect, and conversions are
shared out in proportion to the effects.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

START = "(start)"
CONVERSION = "(conversion)"
NULL = "(null)"

_MAX_ITERATIONS = 10_000
_TOLERANCE = 1e-12


@dataclass(frozen=True)
class Path:
    states: tuple[str, ...]
    converted: bool


@dataclass(frozen=True)
class StateEffect:
    state: str
    removal_effect: float
    share: float
    conversions: float


@dataclass(frozen=True)
class MarkovResult:
    paths: int
    conversions: int
    conversion_probability: float
    effects: list[StateEffect]


Transitions = dict[str, dict[str, float]]


def transitions(paths: Iterable[Path]) -> Transitions:
    """Transition probabilities; consecutive repeats of a state are one visit."""
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
    """The chance to reach the conversion from the start; a removed state leads to null."""
    states = [state for state in chain if state != removed]
    reach = dict.fromkeys(states, 0.0)
    for _ in range(_MAX_ITERATIONS):
        change = 0.0
        for state in states:
            value = sum(p * _value_of(there, reach, removed) for there, p in chain[state].items())
            change = max(change, abs(value - reach[state]))
            reach[state] = value
        if change < _TOLERANCE:
            break
    return reach.get(START, 0.0)


def removal_effects(paths: Sequence[Path]) -> MarkovResult:
    """Each touch state's removal effect and its share of the paths' conversions."""
    chain = transitions(paths)
    total = conversion_probability(chain)
    converted = sum(1 for path in paths if path.converted)
    states = sorted({state for path in paths for state in path.states})
    effects = {
        state: (1.0 - conversion_probability(chain, removed=state) / total) if total else 0.0
        for state in states
    }
    effect_sum = sum(effects.values())
    return MarkovResult(
        paths=len(paths),
        conversions=converted,
        conversion_probability=total,
        effects=[
            StateEffect(
                state,
                effect,
                share := (effect / effect_sum if effect_sum else 0.0),
                share * converted,
            )
            for state, effect in sorted(effects.items(), key=lambda item: (-item[1], item[0]))
        ],
    )


def paths_from(
    touches: Mapping[str, Sequence[tuple[datetime, str]]],
    conversions: Mapping[str, Sequence[datetime]],
) -> list[Path]:
    """Per profile, the states touched up to each conversion, then the rest as a non-converting
    path; `touches` and `conversions` are each profile's, in time order."""
    paths = []
    for profile_id in sorted(touches.keys() | conversions.keys()):
        pending = list(touches.get(profile_id, ()))
        for converted_at in conversions.get(profile_id, ()):
            until = next((i for i, (at, _) in enumerate(pending) if at > converted_at), None)
            taken, pending = (pending, []) if until is None else (pending[:until], pending[until:])
            paths.append(Path(tuple(state for _, state in taken), converted=True))
        if pending:
            paths.append(Path(tuple(state for _, state in pending), converted=False))
    return paths


def _collapsed(states: Sequence[str]) -> list[str]:
    return [state for i, state in enumerate(states) if i == 0 or states[i - 1] != state]


def _value_of(state: str, reach: dict[str, float], removed: str | None) -> float:
    if state == CONVERSION:
        return 1.0
    if state in (NULL, removed):
        return 0.0
    return reach.get(state, 0.0)

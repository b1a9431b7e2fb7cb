"""The variant bandit: Thompson sampling over Beta posteriors, and the holdout.

Each variant's reward rate has the posterior Beta(successes + 1, failures + 1), where a success
is a click (or a conversion, a template setting) and a trial is a sent message. Per request the
bandit draws once from every posterior and picks the highest draw, so a variant is chosen with
the probability that it is the best: exploration fades as evidence grows.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

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

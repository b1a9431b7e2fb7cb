"""Thompson sampling prefers what works, keeps exploring, and the holdout keeps its share."""

from __future__ import annotations

import random
from collections import Counter

from services.content.bandit import VariantStats, choose_variant, held_out, probability_best


def test_a_clearly_better_variant_is_chosen_far_more_often() -> None:
    rng = random.Random(7)
    stats = [
        VariantStats("a", trials=500, successes=10),
        VariantStats("b", trials=500, successes=60),
    ]
    picks = Counter(choose_variant(stats, rng).variant_id for _ in range(2000))
    assert picks["b"] > 0.95 * 2000


def test_without_evidence_variants_are_chosen_about_evenly() -> None:
    rng = random.Random(11)
    stats = [VariantStats("a"), VariantStats("b")]
    picks = Counter(choose_variant(stats, rng).variant_id for _ in range(4000))
    assert 0.45 < picks["a"] / 4000 < 0.55


def test_holdout_share_is_respected() -> None:
    rng = random.Random(3)
    held = sum(held_out(0.2, rng) for _ in range(20_000))
    # Binomial(20000, 0.2): sd ~57, so 5 sd on either side.
    assert abs(held - 4000) < 300
    assert not any(held_out(0.0, rng) for _ in range(1000))


def test_posterior_and_probability_of_being_best() -> None:
    weak, strong = VariantStats("a", 100, 5), VariantStats("b", 100, 30)
    assert weak.posterior_mean == 6 / 102
    best = probability_best([weak, strong], random.Random(0))
    assert best["b"] > 0.99 and abs(sum(best.values()) - 1) < 1e-9
    assert probability_best([weak], random.Random(0)) == {"a": 1.0}


def test_clicks_arriving_before_their_sends_keep_the_posterior_valid() -> None:
    early = VariantStats("a", trials=1, successes=3)
    assert early.alpha == 2 and early.beta == 1

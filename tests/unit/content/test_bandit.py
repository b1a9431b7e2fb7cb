"""Thompson sampling prefers what works, keeps exploring, and the holdout keeps its share; the
contextual bandit pools thin contexts, logs its propensities, stops exploring and reopens."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from services.content.bandit import (
    HOUR_BANDS,
    BanditSettings,
    Context,
    Counts,
    VariantStats,
    choice_probabilities,
    choose,
    choose_variant,
    decay,
    decay_factor,
    evaluate,
    fit,
    held_out,
    hour_band,
    ips_estimate,
    probability_best,
)

Key = tuple[str, str]


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


# The contextual bandit.

VARIANTS = ("a", "b")


def _context(stage: str = "active", category: str = "shoes", band: str = "evening") -> Context:
    return Context(stage, category, "email", band)


def _homogeneous_evidence(rates: dict[str, float], trials: int = 2000) -> dict[Key, Counts]:
    """Every (category, band) of the `active` stage with the same rates: nothing to tell apart."""
    return {
        (_context("active", category, band).key, variant): Counts(trials, trials * rate)
        for category in ("shoes", "bags", "hats", "coats")
        for band in HOUR_BANDS
        for variant, rate in rates.items()
    }


def test_hour_bands_cover_the_day() -> None:
    assert [hour_band(h) for h in (0, 5, 6, 11, 12, 17, 18, 23)] == [
        "night",
        "night",
        "morning",
        "morning",
        "afternoon",
        "afternoon",
        "evening",
        "evening",
    ]
    with pytest.raises(ValueError):
        hour_band(24)


def test_context_keys_are_stable_and_read_back() -> None:
    context = Context("active", "shoes", "email", "evening")
    assert context.key == "stage=active|category=shoes|channel=email|band=evening"
    assert context.pool_keys[:2] == ("channel=email", "stage=active|channel=email")
    assert context.pool_keys[-1] == context.key
    odd = Context(None, "a|b=c", "sms", "night")
    assert odd.key == "stage=|category=a%7Cb%3Dc|channel=sms|band=night"
    assert Context.from_key(odd.key) == odd
    with pytest.raises(ValueError):
        Context.from_key("stage=active|channel=email")


def test_a_thin_context_borrows_strength_from_its_pool() -> None:
    evidence = _homogeneous_evidence({"a": 0.05, "b": 0.04})
    thin = _context("active", "gloves", "night")
    # 5 clicks out of 20 is 25%: far more likely luck than a context unlike all the others.
    evidence[thin.key, "a"] = Counts(20, 5)
    evidence[thin.key, "b"] = Counts(20, 1)
    means = fit(evidence, VARIANTS).posterior_means(thin)
    assert 0.04 < means["a"] < 0.07
    assert means["a"] > means["b"]


def test_a_rich_context_keeps_its_own_rates() -> None:
    evidence = _homogeneous_evidence({"a": 0.05, "b": 0.04})
    rich = _context("active", "gloves", "night")
    evidence[rich.key, "a"] = Counts(20_000, 1_000)  # 5%, like everywhere
    evidence[rich.key, "b"] = Counts(20_000, 2_000)  # 10%: here b is much better
    means = fit(evidence, VARIANTS).posterior_means(rich)
    assert abs(means["b"] - 0.10) < 0.01
    assert abs(means["a"] - 0.05) < 0.005


def test_an_unseen_context_takes_its_deepest_known_pool() -> None:
    evidence = _homogeneous_evidence({"a": 0.03, "b": 0.06})
    model = fit(evidence, VARIANTS)
    unseen = model.posterior(_context("active", "gloves", "night"))
    pool = model.pools["stage=active|channel=email"]
    assert np.allclose(unseen.means, pool.means)
    # Less sure than its pool, never surer.
    assert np.all(unseen.alpha + unseen.beta < pool.alpha + pool.beta)


def test_propensities_sum_to_one_and_match_how_often_each_variant_is_chosen() -> None:
    evidence = {
        (_context().key, "a"): Counts(300, 15),
        (_context().key, "b"): Counts(300, 18),
        (_context().key, "c"): Counts(300, 12),
    }
    model = fit(evidence, ("a", "b", "c"))
    rng = np.random.default_rng(5)
    choices = [choose(model, _context(), rng) for _ in range(3000)]
    for choice in choices[:50]:
        assert abs(sum(choice.probabilities.values()) - 1.0) < 1e-9
        assert choice.propensity == choice.probabilities[choice.variant_id]
    expected = np.mean([list(c.probabilities.values()) for c in choices], axis=0)
    picked = Counter(c.variant_id for c in choices)
    observed = np.asarray([picked[v] / len(choices) for v in ("a", "b", "c")])
    # Binomial(3000, p): sd at most 0.009, so 4 sd.
    assert np.all(np.abs(observed - expected) < 0.036)
    assert 0.05 < expected[2] < expected[0] < expected[1]


def test_value_remaining_is_small_when_one_variant_dominates_and_large_when_undecided() -> None:
    rng = np.random.default_rng(1)
    clear = fit(
        {(_context().key, "a"): Counts(20_000, 600), (_context().key, "b"): Counts(20_000, 1_000)},
        VARIANTS,
    )
    undecided = fit(
        {(_context().key, "a"): Counts(500, 20), (_context().key, "b"): Counts(500, 22)},
        VARIANTS,
    )
    decided = evaluate(clear, rng)
    assert decided.value_remaining < 0.01 and decided.promoted
    assert decided.probability_best["b"] > 0.99
    assert decided.leaders == {_context().key: "b"}
    assert decided.winner == "b"
    open_question = evaluate(undecided, rng)
    assert open_question.value_remaining > 0.3 and not open_question.promoted
    assert open_question.winner is None
    assert 0.3 < open_question.probability_best["a"] < 0.7


def test_without_evidence_nothing_is_promoted_and_choices_are_even() -> None:
    model = fit({}, VARIANTS)
    assert not evaluate(model, np.random.default_rng(0)).promoted
    probabilities = choice_probabilities(model, [_context()], np.random.default_rng(0))[0]
    assert np.all(np.abs(probabilities - 0.5) < 0.05)


def test_after_promotion_the_leader_gets_all_but_the_floor() -> None:
    evidence = {
        (_context().key, "a"): Counts(5_000, 150),
        (_context().key, "b"): Counts(5_000, 250),
        (_context().key, "c"): Counts(5_000, 200),
    }
    model = fit(evidence, ("a", "b", "c"))
    settings = BanditSettings(exploration_floor=0.06)
    rng = np.random.default_rng(2)
    probabilities = choice_probabilities(
        model, [_context()], rng, promoted=True, settings=settings
    )[0]
    assert np.allclose(probabilities, [0.03, 0.94, 0.03])
    picked = Counter(
        choose(model, _context(), rng, promoted=True, settings=settings).variant_id
        for _ in range(4000)
    )
    # Binomial(4000, 0.03): sd ~11, so 5 sd.
    assert abs(picked["a"] - 120) < 55 and abs(picked["c"] - 120) < 55


def test_a_promotion_stands_between_the_two_thresholds() -> None:
    model = fit(
        {(_context().key, "a"): Counts(4_000, 150), (_context().key, "b"): Counts(4_000, 160)},
        VARIANTS,
    )
    settings = BanditSettings(lift_above=0.5)
    fresh = evaluate(model, np.random.default_rng(3), settings=settings)
    assert settings.promote_below < fresh.value_remaining < settings.lift_above
    assert not fresh.promoted
    assert evaluate(model, np.random.default_rng(3), promoted=True, settings=settings).promoted


def test_decay_lifts_a_promotion_once_the_leader_has_faded() -> None:
    key = _context().key
    before = {(key, "a"): Counts(20_000, 1_000), (key, "b"): Counts(20_000, 600)}
    assert evaluate(fit(before, VARIANTS), np.random.default_rng(4)).promoted
    # Then a's appeal halves to 2.5%, below b's 3%; promoted, a gets 95% of the next 60 days.
    since = {(key, "a"): Counts(19_000, 475), (key, "b"): Counts(1_000, 30)}
    for days_discounted, still_promoted in ((0.0, True), (60.0, False)):
        old = decay(before, days_discounted, half_life_days=30.0)
        evidence = {
            row: Counts(old[row].trials + new.trials, old[row].successes + new.successes)
            for row, new in since.items()
        }
        evaluation = evaluate(fit(evidence, VARIANTS), np.random.default_rng(4), promoted=True)
        assert evaluation.promoted is still_promoted


def test_decay_halves_counts_every_half_life() -> None:
    assert decay_factor(30.0, 30.0) == 0.5
    assert decay_factor(0.0) == 1.0
    halved = decay({("k", "a"): Counts(100, 10)}, 15.0, half_life_days=15.0)
    assert halved == {("k", "a"): Counts(50, 5)}


def test_ips_recovers_a_known_policy_value_from_logs() -> None:
    rng = np.random.default_rng(6)
    sends = 200_000
    rates = np.asarray([[0.02, 0.05, 0.03], [0.06, 0.01, 0.04]])  # context x variant
    contexts = rng.integers(0, 2, sends)
    logging = np.asarray([[0.6, 0.2, 0.2], [0.1, 0.3, 0.6]])
    chosen = (rng.random(sends)[:, None] > logging[contexts].cumsum(axis=1)).sum(axis=1)
    clicked = rng.random(sends) < rates[contexts, chosen]
    # The target always sends each context's best variant; its value is the mean of 5% and 6%.
    target = rates.argmax(axis=1)
    estimate = ips_estimate(
        clicked, logging[contexts, chosen], (chosen == target[contexts]).astype(float)
    )
    assert abs(estimate.ips - 0.055) < 3 * estimate.standard_error
    assert estimate.standard_error < 0.002
    assert abs(estimate.snips - 0.055) < 0.004


def test_ips_refuses_logs_it_cannot_weigh() -> None:
    with pytest.raises(ValueError):
        ips_estimate([1.0], [0.0], [1.0])
    with pytest.raises(ValueError):
        ips_estimate([1.0, 0.0], [0.5], [1.0, 1.0])

"""Thompson sampling prefers what works, keeps exploring, and the holdout keeps its share; the
contextual bandit (logistic model, and the nested one kept for comparison) pools thin contexts,
lets a context borrow from every context sharing one of its features, logs its propensities,
stops exploring and reopens."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from services.content.bandit import (
    HOUR_BANDS,
    TEMPLATE_POOL,
    BanditSettings,
    Context,
    Counts,
    LogisticModel,
    NestedModel,
    VariantStats,
    _log_evidence,
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


MODELS = [
    pytest.param(BanditSettings(), id="logistic"),
    pytest.param(BanditSettings(model="nested"), id="nested"),
]


@pytest.mark.parametrize("settings", MODELS)
def test_a_thin_context_borrows_strength_from_its_pool(settings: BanditSettings) -> None:
    evidence = _homogeneous_evidence({"a": 0.05, "b": 0.04})
    thin = _context("active", "gloves", "night")
    # 4 clicks against 1 out of 20 sends each: far more likely luck than a context where b is
    # four times better while a is better everywhere else.
    evidence[thin.key, "a"] = Counts(20, 1)
    evidence[thin.key, "b"] = Counts(20, 4)
    means = fit(evidence, VARIANTS, settings).posterior_means(thin)
    assert means["a"] > means["b"]


def test_the_nested_model_pulls_a_thin_contexts_rate_to_its_pool() -> None:
    evidence = _homogeneous_evidence({"a": 0.05, "b": 0.04})
    thin = _context("active", "gloves", "night")
    evidence[thin.key, "a"] = Counts(20, 5)
    evidence[thin.key, "b"] = Counts(20, 1)
    means = fit(evidence, VARIANTS, BanditSettings(model="nested")).posterior_means(thin)
    assert 0.04 < means["a"] < 0.07


@pytest.mark.parametrize("settings", MODELS)
def test_a_rich_context_keeps_its_own_rates(settings: BanditSettings) -> None:
    evidence = _homogeneous_evidence({"a": 0.05, "b": 0.04})
    rich = _context("active", "gloves", "night")
    evidence[rich.key, "a"] = Counts(20_000, 1_000)  # 5%, like everywhere
    evidence[rich.key, "b"] = Counts(20_000, 2_000)  # 10%: here b is much better
    means = fit(evidence, VARIANTS, settings).posterior_means(rich)
    assert abs(means["b"] - 0.10) < 0.01
    assert abs(means["a"] - 0.05) < 0.005


def _crossed_evidence() -> dict[Key, Counts]:
    """b wins in the evening and a in the morning, for new and active customers alike; lapsed
    customers have only been sent to in the morning, where a wins for them too."""
    rates = {"morning": (0.05, 0.04), "evening": (0.04, 0.055)}
    evidence = {}
    for stage, band in [(s, b) for s in ("new", "active") for b in rates] + [("lapsed", "morning")]:
        scale = 0.6 if stage == "lapsed" else 1.0
        for variant, rate in zip(VARIANTS, rates[band], strict=True):
            evidence[_context(stage, "shoes", band).key, variant] = Counts(
                5_000, 5_000 * rate * scale
            )
    return evidence


def test_a_context_never_seen_borrows_from_each_of_its_features() -> None:
    # Lapsed customers in the evening: never sent to, but the evening favours b at every stage
    # seen, and lapsed customers behave like the others in the morning.
    model = fit(_crossed_evidence(), VARIANTS)
    unseen = _context("lapsed", "shoes", "evening")
    means = model.posterior_means(unseen)
    assert means["b"] > means["a"]
    probabilities = choice_probabilities(model, [unseen], np.random.default_rng(8))[0]
    assert probabilities[1] > 0.8


def test_the_nested_model_only_borrows_from_its_own_branch() -> None:
    # The limit the logistic model lifts: the unseen context takes the lapsed pool, where a wins.
    model = fit(_crossed_evidence(), VARIANTS, BanditSettings(model="nested"))
    means = model.posterior_means(_context("lapsed", "shoes", "evening"))
    assert means["a"] > means["b"]


def test_a_level_never_seen_leaves_its_coefficients_at_their_prior() -> None:
    evidence = _homogeneous_evidence({"a": 0.03, "b": 0.06})
    model = fit(evidence, VARIANTS)
    assert isinstance(model, LogisticModel)
    seen, unseen = _context("active", "shoes", "night"), _context("active", "gloves", "night")
    mean, covariance = model.logit_moments([seen, unseen])
    variance = np.diagonal(covariance, axis1=1, axis2=2)
    # The category's main effect (prior sd 1) and each variant's interaction with it are added.
    assert np.all(variance[1] > variance[0] + 0.9)
    # Their prior mean is 0: the same logits as a seen category of the same stage and band.
    assert np.allclose(mean[1], mean[0], atol=0.05)
    assert model.posterior_means(unseen)["b"] > model.posterior_means(unseen)["a"]


def test_empirical_bayes_shrinks_the_interactions_of_a_field_that_does_not_matter() -> None:
    # b is better for new customers and a for active ones, whatever the hour.
    rates = {"new": (0.03, 0.045), "active": (0.05, 0.035)}
    evidence = {
        (_context(stage, "shoes", band).key, variant): Counts(4_000, 4_000 * rate)
        for stage, pair in rates.items()
        for band in HOUR_BANDS
        for variant, rate in zip(VARIANTS, pair, strict=True)
    }
    model = fit(evidence, VARIANTS)
    assert isinstance(model, LogisticModel)
    scales = model.interaction_scales
    assert scales["lifecycle_stage"] > 0.2
    assert scales["hour_band"] < 0.1
    fixed = fit(evidence, VARIANTS, BanditSettings(empirical_bayes=False, interaction_scale=0.3))
    assert isinstance(fixed, LogisticModel)
    assert fixed.interaction_scales["hour_band"] == pytest.approx(0.3)


def test_a_well_sampled_context_has_the_binomial_uncertainty() -> None:
    # 20,000 sends at 5%: the logit's variance is 1 / (n p (1 - p)), the prior hardly counts.
    evidence = {
        (_context().key, "a"): Counts(20_000, 1_000),
        (_context().key, "b"): Counts(20_000, 600),
    }
    model = fit(evidence, VARIANTS)
    assert isinstance(model, LogisticModel)
    mean, covariance = model.logit_moments([_context()])
    assert np.allclose(mean[0], [math.log(0.05 / 0.95), math.log(0.03 / 0.97)], atol=0.01)
    binomial = [1 / (20_000 * 0.05 * 0.95), 1 / (20_000 * 0.03 * 0.97)]
    assert np.allclose(np.diagonal(covariance[0]), binomial, rtol=0.1)


def test_the_marginal_likelihood_of_a_scale_is_the_direct_one() -> None:
    # The Schur-complement shortcut against the determinant and solve it replaces.
    rng = np.random.default_rng(9)
    features = rng.normal(size=(30, 8))
    data_precision = features.T @ features
    precision = rng.uniform(0.5, 2.0, size=8)
    linear = rng.normal(size=8)
    columns = np.asarray([2, 5, 6], dtype=np.intp)
    grid = np.geomspace(0.05, 1.0, 5)
    shortcut = _log_evidence(data_precision, precision, linear, columns, grid)
    direct = []
    for scale in grid:
        prior = precision.copy()
        prior[columns] = 1.0 / scale**2
        matrix = data_precision + np.diag(prior)
        direct.append(
            np.log(prior).sum()
            - np.linalg.slogdet(matrix)[1]
            + linear @ np.linalg.solve(matrix, linear)
        )
    # Equal up to a constant that does not depend on the scale.
    assert np.allclose(shortcut - shortcut[0], (np.asarray(direct) - direct[0]) / 2.0)


def test_an_unseen_context_takes_its_deepest_known_pool_in_the_nested_model() -> None:
    evidence = _homogeneous_evidence({"a": 0.03, "b": 0.06})
    model = fit(evidence, VARIANTS, BanditSettings(model="nested"))
    assert isinstance(model, NestedModel)
    unseen = model.posterior(_context("active", "gloves", "night"))
    pool = model.pools["stage=active|channel=email"]
    assert np.allclose(unseen.means, pool.means)
    # Less sure than its pool, never surer.
    assert np.all(unseen.alpha + unseen.beta < pool.alpha + pool.beta)


@pytest.mark.parametrize("settings", MODELS)
def test_propensities_sum_to_one_and_match_how_often_each_variant_is_chosen(
    settings: BanditSettings,
) -> None:
    evidence = {
        (_context().key, "a"): Counts(300, 15),
        (_context().key, "b"): Counts(300, 18),
        (_context().key, "c"): Counts(300, 12),
    }
    model = fit(evidence, ("a", "b", "c"), settings)
    rng = np.random.default_rng(5)
    choices = [choose(model, _context(), rng, settings=settings) for _ in range(3000)]
    for choice in choices[:50]:
        assert abs(sum(choice.probabilities.values()) - 1.0) < 1e-9
        assert choice.propensity == choice.probabilities[choice.variant_id]
    expected = np.mean([list(c.probabilities.values()) for c in choices], axis=0)
    picked = Counter(c.variant_id for c in choices)
    observed = np.asarray([picked[v] / len(choices) for v in ("a", "b", "c")])
    # Binomial(3000, p): sd at most 0.009, so 4 sd.
    assert np.all(np.abs(observed - expected) < 0.036)
    assert 0.05 < expected[2] < expected[0] < expected[1]


@pytest.mark.parametrize("settings", MODELS)
def test_value_remaining_is_small_when_one_variant_dominates_and_large_when_undecided(
    settings: BanditSettings,
) -> None:
    rng = np.random.default_rng(1)
    clear = fit(
        {(_context().key, "a"): Counts(20_000, 600), (_context().key, "b"): Counts(20_000, 1_000)},
        VARIANTS,
        settings,
    )
    undecided = fit(
        {(_context().key, "a"): Counts(500, 20), (_context().key, "b"): Counts(500, 22)},
        VARIANTS,
        settings,
    )
    decided = evaluate(clear, rng, settings=settings)
    assert decided.value_remaining < 0.01 and decided.promoted
    assert decided.probability_best["b"] > 0.99
    assert decided.leaders == {_context().key: "b"}
    assert decided.winner == "b"
    open_question = evaluate(undecided, rng, settings=settings)
    assert open_question.value_remaining > 0.3 and not open_question.promoted
    assert open_question.winner is None
    assert 0.3 < open_question.probability_best["a"] < 0.7


@pytest.mark.parametrize("settings", MODELS)
def test_without_evidence_nothing_is_promoted_and_choices_are_even(
    settings: BanditSettings,
) -> None:
    model = fit({}, VARIANTS, settings)
    evaluation = evaluate(model, np.random.default_rng(0), settings=settings)
    assert not evaluation.promoted
    assert evaluation.leaders.keys() == {TEMPLATE_POOL}
    probabilities = choice_probabilities(
        model, [_context()], np.random.default_rng(0), settings=settings
    )[0]
    assert np.all(np.abs(probabilities - 0.5) < 0.05)


@pytest.mark.parametrize("settings", MODELS)
def test_after_promotion_the_leader_gets_all_but_the_floor(settings: BanditSettings) -> None:
    evidence = {
        (_context().key, "a"): Counts(5_000, 150),
        (_context().key, "b"): Counts(5_000, 250),
        (_context().key, "c"): Counts(5_000, 200),
    }
    model = fit(evidence, ("a", "b", "c"), settings)
    floored = replace(settings, exploration_floor=0.06)
    rng = np.random.default_rng(2)
    probabilities = choice_probabilities(model, [_context()], rng, promoted=True, settings=floored)[
        0
    ]
    assert np.allclose(probabilities, [0.03, 0.94, 0.03])
    picked = Counter(
        choose(model, _context(), rng, promoted=True, settings=floored).variant_id
        for _ in range(4000)
    )
    # Binomial(4000, 0.03): sd ~11, so 5 sd.
    assert abs(picked["a"] - 120) < 55 and abs(picked["c"] - 120) < 55


@pytest.mark.parametrize("settings", MODELS)
def test_a_promotion_stands_between_the_two_thresholds(settings: BanditSettings) -> None:
    model = fit(
        {(_context().key, "a"): Counts(4_000, 150), (_context().key, "b"): Counts(4_000, 160)},
        VARIANTS,
        settings,
    )
    wide = replace(settings, lift_above=0.5)
    fresh = evaluate(model, np.random.default_rng(3), settings=wide)
    assert wide.promote_below < fresh.value_remaining < wide.lift_above
    assert not fresh.promoted
    assert evaluate(model, np.random.default_rng(3), promoted=True, settings=wide).promoted


@pytest.mark.parametrize("settings", MODELS)
def test_decay_lifts_a_promotion_once_the_leader_has_faded(settings: BanditSettings) -> None:
    key = _context().key
    before = {(key, "a"): Counts(20_000, 1_000), (key, "b"): Counts(20_000, 600)}
    assert evaluate(fit(before, VARIANTS, settings), np.random.default_rng(4)).promoted
    # Then a's appeal halves to 2.5%, below b's 3%; promoted, a gets 95% of the next 60 days.
    since = {(key, "a"): Counts(19_000, 475), (key, "b"): Counts(1_000, 30)}
    for days_discounted, still_promoted in ((0.0, True), (60.0, False)):
        old = decay(before, days_discounted, half_life_days=30.0)
        evidence = {
            row: Counts(old[row].trials + new.trials, old[row].successes + new.successes)
            for row, new in since.items()
        }
        model = fit(evidence, VARIANTS, settings)
        evaluation = evaluate(model, np.random.default_rng(4), promoted=True, settings=settings)
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

"""Channel choice: eligibility, fallback order, shrinkage, exploration and logged probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from services.journey.channel_choice import (
    NO_CHANNEL,
    ChannelCounts,
    ChannelPrior,
    choose_channels,
    fit_channel_priors,
    rank_channels,
)

POPULATION = {
    "email": ChannelPrior(0.12, 40.0),
    "sms": ChannelPrior(0.07, 40.0),
    "push": ChannelPrior(0.05, 40.0),
}
ALL = ("email", "sms", "push")


def test_an_ineligible_channel_is_never_chosen_nor_a_fallback() -> None:
    person = {"sms": ChannelCounts(50, 40)}  # sms would win by far
    rng = np.random.default_rng(5)
    for _ in range(500):
        choice = rank_channels(ALL, {"email", "push"}, person, POPULATION, rng, explore_share=0.5)
        assert choice.channel in {"email", "push"}
        assert "sms" not in choice.ranking and "sms" not in choice.probabilities


def test_ranking_is_the_fallback_order_by_posterior_mean() -> None:
    person = {"push": ChannelCounts(40, 20), "sms": ChannelCounts(40, 8)}
    choice = rank_channels(
        ALL, set(ALL), person, POPULATION, np.random.default_rng(0), explore_share=0.0
    )
    assert choice.ranking == ("push", "sms", "email")
    assert (choice.channel, choice.explored, choice.probability) == ("push", False, 1.0)


def test_an_explored_channel_goes_first_and_the_rest_keep_their_order() -> None:
    choices = choose_channels(
        np.zeros((2000, 3)),
        np.zeros((2000, 3)),
        np.ones((2000, 3), dtype=bool),
        list(POPULATION.values()),
        np.random.default_rng(2),
        explore_share=1.0,
    )
    explored_sms = choices.chosen == 1
    assert explored_sms.any()
    assert (choices.ranking[explored_sms] == [1, 0, 2]).all()


def test_probabilities_are_exact_and_sum_to_one() -> None:
    choice = rank_channels(
        ALL, {"email", "sms"}, {}, POPULATION, np.random.default_rng(1), explore_share=0.2
    )
    assert choice.probabilities == pytest.approx({"email": 0.9, "sms": 0.1})
    assert sum(choice.probabilities.values()) == pytest.approx(1.0)
    assert choice.probability == choice.probabilities[choice.channel or ""]


def test_batch_probabilities_sum_to_one_per_person_with_any_channel() -> None:
    rng = np.random.default_rng(4)
    eligible = rng.random((1000, 3)) < 0.5
    sends = rng.integers(0, 30, (1000, 3)).astype(float)
    engagements = np.floor(sends * rng.random((1000, 3)) * 0.3)
    choices = choose_channels(sends, engagements, eligible, list(POPULATION.values()), rng)
    some = eligible.any(axis=1)
    assert np.allclose(choices.probabilities[some].sum(axis=1), 1.0)
    assert np.allclose(choices.probabilities[~eligible], 0.0)
    assert (choices.chosen[~some] == NO_CHANNEL).all()
    assert eligible[some, choices.chosen[some]].all()


def test_exploration_share_is_respected() -> None:
    people = 30_000
    counts = np.zeros((people, 3))
    choices = choose_channels(
        counts,
        counts,
        np.ones((people, 3), dtype=bool),
        list(POPULATION.values()),
        np.random.default_rng(9),
        explore_share=0.1,
    )
    assert choices.explored.mean() == pytest.approx(0.1, abs=0.006)
    assert np.mean(choices.chosen != 0) == pytest.approx(0.1 * 2 / 3, abs=0.005)


def test_one_lucky_send_is_shrunk_but_strong_evidence_wins() -> None:
    rng = np.random.default_rng(0)
    lucky = rank_channels(
        ALL, set(ALL), {"sms": ChannelCounts(1, 1)}, POPULATION, rng, explore_share=0
    )
    assert lucky.channel == "email"
    proven = {"sms": ChannelCounts(60, 18), "email": ChannelCounts(60, 3)}
    assert rank_channels(ALL, set(ALL), proven, POPULATION, rng, explore_share=0).channel == "sms"


def test_no_candidates_or_none_eligible_gives_no_channel_and_a_reason() -> None:
    rng = np.random.default_rng(0)
    none_eligible = rank_channels(ALL, {"webhook"}, {}, POPULATION, rng)
    assert (none_eligible.channel, none_eligible.reason, none_eligible.ranking) == (
        None,
        "none_eligible",
        (),
    )
    assert rank_channels([], set(ALL), {}, POPULATION, rng).reason == "no_candidates"


def test_a_channel_without_a_population_prior_gets_a_weak_average_one() -> None:
    choice = rank_channels(
        ["email", "weixin"],
        {"email", "weixin"},
        {"weixin": ChannelCounts(20, 10)},
        POPULATION,
        np.random.default_rng(0),
        explore_share=0.0,
    )
    assert choice.channel == "weixin"


def test_priors_pool_each_channel_and_lean_on_the_overall_rate_without_data() -> None:
    rng = np.random.default_rng(12)
    people = 4000
    rates = rng.beta(0.1 * 25, 0.9 * 25, people)
    sends = np.zeros((people, 2))
    sends[:, 0] = 40
    engagements = np.zeros((people, 2))
    engagements[:, 0] = rng.binomial(40, rates)
    priors = fit_channel_priors(["email", "push"], sends, engagements)
    assert priors["email"].mean == pytest.approx(0.1, abs=0.005)
    assert priors["email"].strength == pytest.approx(25.0, rel=0.25)
    assert priors["push"].mean == pytest.approx(priors["email"].mean, abs=0.005)
    assert priors["push"].strength == 2.0


def test_counts_are_validated() -> None:
    with pytest.raises(ValueError):
        ChannelCounts(1, 2)
    with pytest.raises(ValueError):
        choose_channels(
            [[1.0]], [[0.0]], [[True, True]], [POPULATION["email"]], np.random.default_rng()
        )

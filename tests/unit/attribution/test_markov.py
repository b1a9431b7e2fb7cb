"""The Markov chain, its removal effects on small chains worked out by hand, the split of one
conversion among its touches, and the fit of the split to the removal shares."""

from __future__ import annotations

import pytest

from services.attribution.markov import (
    CONVERSION,
    NULL,
    START,
    Path,
    conversion_probability,
    credit_weights,
    removal_effects,
    shares,
    transitions,
)

# start→A 2/3, start→B 1/3; A→B 1/2, A→null 1/2; B→conversion 1.
# P(conversion) = 2/3·1/2 + 1/3 = 2/3. Without A: 1/3, effect 1/2. Without B: 0, effect 1.
PATHS = [Path(("A", "B"), True), Path(("A",), False), Path(("B",), True)]


def effects_of(paths: list[Path]) -> dict[str, tuple[float, float]]:
    return {e.state: (e.removal_effect, e.share) for e in removal_effects(paths).effects}


def test_transitions_are_the_observed_frequencies() -> None:
    chain = transitions(PATHS)
    assert chain[START] == pytest.approx({"A": 2 / 3, "B": 1 / 3})
    assert chain["A"] == pytest.approx({"B": 0.5, NULL: 0.5})
    assert chain["B"] == {CONVERSION: 1.0}


def test_conversion_probability_with_and_without_a_state() -> None:
    chain = transitions(PATHS)
    assert conversion_probability(chain) == pytest.approx(2 / 3)
    assert conversion_probability(chain, removed="A") == pytest.approx(1 / 3)
    assert conversion_probability(chain, removed="B") == pytest.approx(0.0)


def test_removal_effects_and_their_shares() -> None:
    result = removal_effects(PATHS)
    assert effects_of(PATHS) == {
        "A": pytest.approx((0.5, 1 / 3)),
        "B": pytest.approx((1.0, 2 / 3)),
    }
    assert (result.conversions, result.paths) == (2, 3)
    assert [e.state for e in result.effects] == ["B", "A"]


def test_removal_effects_through_a_loop() -> None:
    # start→A 1/2, →B 1/2; A→B 1/2, A→conversion 1/2; B→A 1/2, B→null 1/2.
    # x_A = x_B/2 + 1/2, x_B = x_A/2: x_A = 2/3, x_B = 1/3, P = 1/2.
    # Without A: B only leads to null, P = 0. Without B: x_A = 1/2, P = 1/4, effect 1/2.
    paths = [Path(("A", "B", "A"), True), Path(("B",), False)]
    assert conversion_probability(transitions(paths)) == pytest.approx(0.5)
    assert effects_of(paths) == {
        "A": pytest.approx((1.0, 2 / 3)),
        "B": pytest.approx((0.5, 1 / 3)),
    }


# A and B each lead to X, which converts: each carries half the conversions.
CONVERGING = [Path(("A", "X"), True), Path(("B", "X"), True)]


def test_null_paths_where_a_channel_ends_journeys_lower_its_effect() -> None:
    # Two people reach X, then A, and go no further. start→A 1/4, →B 1/4, →X 1/2; A→X 1/3,
    # A→null 2/3; B→X 1; X→conversion 1/2, X→A 1/2. x_X = 1/2 + x_A/2 and x_A = x_X/3 give
    # x_X = 3/5, x_A = 1/5: P = 1/20 + 3/20 + 6/20 = 1/2. Without A, x_X = 1/2 and
    # P = 1/8 + 1/4 = 3/8: the effect falls from 1/2 to 1 - 3/4 = 1/4.
    assert effects_of(CONVERGING)["A"] == pytest.approx((0.5, 0.25))
    ending = [*CONVERGING, Path(("X", "A"), False), Path(("X", "A"), False)]
    assert effects_of(ending)["A"][0] == pytest.approx(0.25)
    assert effects_of(ending)["A"][1] < 0.25


def test_null_paths_that_only_touch_a_channel_leave_its_effect() -> None:
    # A removal effect is the part of the conversions that pass through the state, not its
    # conversion rate: people A reached in vain do not change which conversions needed A.
    in_vain = [*CONVERGING, Path(("A",), False), Path(("A",), False)]
    assert effects_of(in_vain) == effects_of(CONVERGING)


def test_a_channel_that_never_precedes_a_conversion_has_no_effect() -> None:
    paths = [*PATHS, Path(("C",), False), Path(("A", "C"), False)]
    effects = effects_of(paths)
    assert effects["C"] == (0.0, 0.0)
    assert effects["A"][0] > 0 and effects["B"][0] > 0


def test_touchless_conversions_make_effects_fractions_of_all_conversions() -> None:
    # Half the conversions had no touch: removing A loses the other half.
    paths = [Path(("A",), True), Path((), True)]
    assert effects_of(paths) == {"A": pytest.approx((0.5, 1.0))}


def test_repeated_states_in_a_row_are_one_visit() -> None:
    assert transitions([Path(("A", "A", "A"), True)]) == transitions([Path(("A",), True)])


def test_no_paths_no_chance() -> None:
    result = removal_effects([])
    assert (result.paths, result.conversion_probability, result.effects) == (0, 0.0, [])


def test_a_conversion_is_split_by_the_removal_effects_of_its_states() -> None:
    effects = {"email": 0.6, "push": 0.2, "social": 0.0}
    assert shares(["email", "push"], effects) == pytest.approx([0.75, 0.25])
    assert shares(["social", "email"], effects) == pytest.approx([0.0, 1.0])


def test_touches_of_one_state_split_its_part_equally() -> None:
    effects = {"email": 0.6, "push": 0.2}
    # email's part is 3/4 however many emails; its two touches take 3/8 each.
    assert shares(["email", "push", "email"], effects) == pytest.approx([3 / 8, 1 / 4, 3 / 8])


def test_states_without_effect_share_equally() -> None:
    assert shares(["x", "y", "x"], {}) == pytest.approx([1 / 3] * 3)
    assert shares([], {"x": 1.0}) == []


@pytest.mark.parametrize(
    "states", [["a"], ["a", "b"], ["b", "a", "b", "c"], ["c", "c", "c"], ["d", "a"]]
)
def test_shares_sum_to_the_conversion(states: list[str]) -> None:
    assert sum(shares(states, {"a": 0.3, "b": 0.05, "c": 0.9})) == pytest.approx(1.0)


# Four conversions; A's target 4 x 0.5 = 2, B's 1.2, C's 0.8. Split by the shares themselves, A
# earns 1 + 0.5/0.8 + 0.5/0.7 = 2.34: A shares its paths with smaller states and takes most.
SHARED = [("A", "B"), ("A", "C"), ("B", "C"), ("A",)]
SHARES = {"A": 0.5, "B": 0.3, "C": 0.2}


def summed(paths: list[tuple[str, ...]], weights: dict[str, float]) -> dict[str, float]:
    """Each state's credit over the paths, from the touches' shares."""
    earned: dict[str, float] = {}
    for states in paths:
        for state, part in zip(states, shares(states, weights), strict=True):
            earned[state] = earned.get(state, 0.0) + part
    return earned


def test_split_by_the_shares_themselves_misses_them() -> None:
    assert summed(SHARED, SHARES)["A"] == pytest.approx(1 + 0.5 / 0.8 + 0.5 / 0.7)


def test_fitted_weights_make_summed_credits_the_removal_shares() -> None:
    fitted = credit_weights(SHARED, SHARES)
    targets = {"A": 2.0, "B": 1.2, "C": 0.8}
    assert fitted.targets == pytest.approx(targets)
    assert summed(SHARED, fitted.weights) == pytest.approx(targets, abs=1e-6)
    assert fitted.credited == pytest.approx(targets, abs=1e-6)
    assert fitted.converged and fitted.residual == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    "paths",
    [SHARED, [("A", "B", "A"), ("C", "D"), ("B",), ("D", "C", "C")], [("D",), ("A", "D")]],
)
def test_each_conversion_is_shared_by_its_own_states_and_sums_to_one(
    paths: list[tuple[str, ...]],
) -> None:
    # D has no removal effect: it earns nothing but on a path of its own, split equally.
    weights = credit_weights(paths, {**SHARES, "D": 0.0}).weights
    for states in paths:
        split = shares(states, weights)
        assert sum(split) == pytest.approx(1.0)
        assert all(part >= 0 for part in split)
        if set(states) != {"D"}:
            assert all(part == 0 for state, part in zip(states, split, strict=True) if state == "D")
    assert set(weights) <= {state for states in paths for state in states} - {"D"}


def test_touchless_conversions_are_in_no_target() -> None:
    fitted = credit_weights([(), ("A",), ("A", "B")], {"A": 0.75, "B": 0.25})
    assert fitted.targets == pytest.approx({"A": 1.5, "B": 0.5})
    assert fitted.credited == pytest.approx({"A": 1.5, "B": 0.5}, abs=1e-6)


# A's target 2 exceeds the one conversion whose path holds it: the closest split gives A all of
# that one and B the other three, a conversion's worth of credit off.
BEYOND = [("A", "B"), ("B",), ("B",), ("B",)]


def test_targets_beyond_reach_end_at_the_closest_split_with_the_residual() -> None:
    fitted = credit_weights(BEYOND, {"A": 0.5, "B": 0.5})
    assert fitted.credited == pytest.approx({"A": 1.0, "B": 3.0}, abs=1e-6)
    assert fitted.residual == pytest.approx(1.0, abs=1e-6)
    assert not fitted.converged
    assert fitted.steps < 100
    assert [sum(shares(states, fitted.weights)) for states in BEYOND] == pytest.approx([1.0] * 4)


def test_the_fit_stops_at_its_cap() -> None:
    fitted = credit_weights(BEYOND, {"A": 0.5, "B": 0.5}, max_steps=5)
    assert fitted.steps == 5
    assert fitted.residual > 1.0
    # On the edge of reach (A's target is exactly its one path) the gap only shrinks slowly.
    edge = credit_weights([("A", "B"), ("B",)], {"A": 0.5, "B": 0.5}, max_steps=300)
    assert edge.steps == 300
    assert 0 < edge.residual < 0.01


def test_a_state_with_a_share_on_no_converting_path_is_the_residual() -> None:
    fitted = credit_weights([("A",), ("A",)], {"A": 0.75, "X": 0.25})
    assert fitted.credited == pytest.approx({"A": 2.0})
    assert fitted.residual == pytest.approx(0.5)
    assert "X" not in fitted.weights


def test_no_paths_no_weights() -> None:
    fitted = credit_weights([], {"A": 1.0})
    assert (fitted.weights, fitted.credited, fitted.residual, fitted.steps) == ({}, {}, 0.0, 0)

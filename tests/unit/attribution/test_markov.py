"""The Markov removal effect on a small example worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.attribution.markov import (
    CONVERSION,
    NULL,
    START,
    Path,
    conversion_probability,
    paths_from,
    removal_effects,
    transitions,
)

# start→A 2/3, start→B 1/3; A→B 1/2, A→null 1/2; B→conversion 1.
# P(conversion) = 2/3·1/2 + 1/3 = 2/3. Without A: 1/3, effect 1/2. Without B: 0, effect 1.
PATHS = [Path(("A", "B"), True), Path(("A",), False), Path(("B",), True)]


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


def test_removal_effects_share_out_the_conversions() -> None:
    result = removal_effects(PATHS)
    effects = {e.state: (e.removal_effect, e.share, e.conversions) for e in result.effects}
    assert effects["A"] == pytest.approx((0.5, 1 / 3, 2 / 3))
    assert effects["B"] == pytest.approx((1.0, 2 / 3, 4 / 3))
    assert result.conversions == 2 and result.paths == 3


def test_repeated_states_in_a_row_are_one_visit() -> None:
    assert transitions([Path(("A", "A", "A"), True)]) == transitions([Path(("A",), True)])


def test_loops_between_states_converge() -> None:
    result = removal_effects([Path(("A", "B", "A", "B"), True), Path(("B", "A"), False)])
    assert 0 < result.conversion_probability < 1
    assert sum(e.share for e in result.effects) == pytest.approx(1.0)


def test_paths_split_at_conversions_and_keep_the_unconverted_rest() -> None:
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    at = [t0 + timedelta(hours=h) for h in range(5)]
    paths = paths_from(
        {"p1": [(at[0], "email"), (at[1], "sms"), (at[3], "push")], "p2": [(at[0], "email")]},
        {"p1": [at[2]], "p3": [at[4]]},
    )
    assert paths == [
        Path(("email", "sms"), True),
        Path(("push",), False),
        Path(("email",), False),
        Path((), True),
    ]

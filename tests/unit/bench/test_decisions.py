"""The decision-quality simulator on its default truth: what each model must recover."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.decisions.__main__ import main
from bench.decisions.result import ScenarioResult
from bench.decisions.simulator import SCENARIOS, load_truth, run_scenarios


@pytest.fixture(scope="module")
def results() -> dict[str, ScenarioResult]:
    truth = load_truth(None)
    return {r.name: r for r in run_scenarios(truth, int(truth["seed"]), list(SCENARIOS))}


def test_churn_model_ranks_as_well_as_the_planted_parameters(
    results: dict[str, ScenarioResult],
) -> None:
    """The fitted model is as good as knowing the planted parameters: nothing is lost in fitting."""
    churn = results["churn"]
    fitted = churn.figure("churn AUC").value
    planted = churn.figure("churn AUC with the planted parameters").value
    assert fitted == pytest.approx(planted, abs=0.01)
    assert fitted > 0.7


def test_markov_recovers_each_planted_share_within_five_points_and_last_touch_does_not(
    results: dict[str, ScenarioResult],
) -> None:
    attribution = results["attribution"]
    assert attribution.figure("Markov share, largest error").passed
    assert attribution.figure("Markov per-conversion credit, largest error").value <= 5.0
    assert attribution.figure("last-touch share, largest error").value > 5.0


def test_logged_propensities_evaluate_the_oracle_offline(
    results: dict[str, ScenarioResult],
) -> None:
    assert results["bandit"].figure("IPS error (standard errors)").passed


def test_contextual_bandit_beats_uniform_and_context_free_thompson(
    results: dict[str, ScenarioResult],
) -> None:
    bandit = results["bandit"]
    contextual = bandit.figure("click rate, contextual bandit").value
    assert contextual > bandit.figure("click rate, uniform random").value
    assert contextual > bandit.figure("click rate, Thompson, no context").value


def test_send_time_beats_the_best_fixed_hour_by_ten_percent(
    results: dict[str, ScenarioResult],
) -> None:
    assert results["send_time"].figure("opens vs best fixed hour").passed


def test_send_time_finds_best_hours_nearly_as_often_as_the_bayes_ceiling_and_raw_opens_do_not(
    results: dict[str, ScenarioResult],
) -> None:
    send_time = results["send_time"]
    found = send_time.figure("best hour found (people with ≥ 10 opens)").value
    ceiling = send_time.figure(
        "best hour found by the Bayes rule knowing the planted population (ceiling)"
    ).value
    assert found >= ceiling - 0.05
    assert found > 3 * send_time.figure("best hour by raw opens (same people)").value


def test_channel_choice_never_tries_an_ineligible_channel_and_lifts_engagement(
    results: dict[str, ScenarioResult],
) -> None:
    channels = results["channels"]
    assert channels.figure("ineligible channels tried").passed
    assert channels.figure("engagement vs best fixed channel order").value > 0


def test_the_driver_writes_figures_and_a_plot_per_scenario(tmp_path: Path) -> None:
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"seed": 7}))
    code = main(["--truth", str(truth), "--out", str(tmp_path), "attribution"])
    document = json.loads((tmp_path / "decisions.json").read_text())
    assert document["seed"] == 7
    assert list(document["scenarios"]) == ["attribution"]
    assert (tmp_path / "attribution.png").stat().st_size > 0
    assert code == 0


def test_a_truth_file_with_an_unknown_section_is_refused(tmp_path: Path) -> None:
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"purchase": {}}))
    with pytest.raises(ValueError, match="unknown sections"):
        load_truth(truth)

"""Predictive scores on profiles: rounded, and announced only when a rounded score changed."""

from __future__ import annotations

import pytest

from libs.common.events import ProfileUpdated
from services.profile.features import DAY, FeatureRules
from services.profile.fits import rescored
from services.profile.predictions import BgNbdParams, GammaGammaParams
from services.profile.scoring import SCORE_NAMES, FittedModels, ScoreModel, predict, rounded
from services.profile.state import Observation, ProfileState
from services.profile.store import ReviewedProfile

RULES = FeatureRules()
T0 = 19_000 * DAY  # 2022-01-08: every moment of these tests is in the past
# The paper's CDNOW estimates in days, and its spend model.
MODEL = ScoreModel(
    fit_id=7,
    fitted_at=T0,
    models=FittedModels(
        BgNbdParams(r=0.243, alpha=30.898, a=0.793, b=2.426),
        GammaGammaParams(p=6.25, q=3.74, v=15.44),
        profiles=100,
        repeat_buyers=40,
    ),
)
HORIZON = 90.0


def buyer(*order_days: float, value: float = 40.0) -> ProfileState:
    state = ProfileState()
    for day in order_days:
        state.observe(Observation("Order Completed", "track", T0 + day * DAY, revenue=value), RULES)
    return state


def reviewed(profile_id: str, state: ProfileState, reviewed_at: float) -> ReviewedProfile:
    return ReviewedProfile(profile_id, state, reviewed_at)


def announced(events: list[ProfileUpdated], profile_id: str) -> dict[str, object]:
    return {
        change.field: change.after
        for event in events
        if event.profile_id == profile_id
        for change in event.changes
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.8349, 0.83), (0.0047, 0.0), (0.047, 0.05), (2.649, 2.6), (30.44, 30.0), (1234.5, 1200.0)],
)
def test_scores_keep_two_significant_figures_and_nothing_below_hundredths(
    value: float, expected: float
) -> None:
    assert rounded(value) == expected


def test_a_profile_is_given_every_score_rounded() -> None:
    history = buyer(0, 10, 20).purchase_history(T0 + 30 * DAY)
    assert history is not None
    scores = predict(MODEL, {"prf_a": history}, T0 + 30 * DAY, HORIZON)["prf_a"]
    assert set(scores.values) == set(SCORE_NAMES)
    assert all(rounded(value) == value for value in scores.values.values())
    assert (scores.fit_id, scores.scored_at) == (7, T0 + 30 * DAY)


def test_a_first_score_is_announced_as_scores_changes() -> None:
    as_of = T0 + 300 * DAY
    profile = reviewed("prf_a", buyer(*range(0, 300, 10)), as_of)
    saved, events = rescored([profile], MODEL, as_of, RULES, HORIZON)
    changed = announced([event.data for event in events], "prf_a")
    assert {f"scores.{name}" for name in SCORE_NAMES} <= changed.keys()
    assert changed["scores.churn_risk"] == saved["prf_a"][0].view(as_of, RULES)["scores.churn_risk"]
    assert all(event.data.caused_by is None for event in events)


def test_a_daily_rescore_announces_only_the_profiles_whose_rounded_scores_moved() -> None:
    first, next_day = T0 + 1000 * DAY, T0 + 1001 * DAY
    lapsed_once = buyer(0)  # one purchase long ago: a day changes nothing at two figures
    recent = buyer(*range(700, 1000, 10))  # a frequent buyer: 30-day expectation moves daily
    profiles = {"prf_lapsed": lapsed_once, "prf_recent": recent}
    saved, _ = rescored(
        [reviewed(pid, state, first) for pid, state in profiles.items()],
        MODEL,
        first,
        RULES,
        HORIZON,
    )
    again = [reviewed(pid, state, first) for pid, (state, _) in saved.items()]
    _, events = rescored(again, MODEL, next_day, RULES, HORIZON)
    assert [event.data.profile_id for event in events] == ["prf_recent"]
    moved = announced([events[0].data], "prf_recent").keys()
    assert moved and moved < {f"scores.{name}" for name in SCORE_NAMES}  # only those that moved


def test_the_same_scores_again_are_not_announced() -> None:
    as_of = T0 + 400 * DAY
    state = buyer(0, 30, 60, 90)
    saved, _ = rescored([reviewed("prf_a", state, as_of)], MODEL, as_of, RULES, HORIZON)
    _, events = rescored(
        [reviewed("prf_a", saved["prf_a"][0], as_of)], MODEL, as_of, RULES, HORIZON
    )
    assert events == []


def test_a_high_churn_risk_turns_an_active_visitor_at_risk_and_says_so() -> None:
    as_of = T0 + 400 * DAY
    state = buyer(*range(0, 200, 10))  # bought every ten days, stopped 200 days ago
    for hour in range(5):  # but still visits every day
        state.observe(Observation("Home", "page", as_of - hour * 3600), RULES)
    assert state.view(as_of, RULES)["lifecycle_stage"] == "active"
    _, events = rescored([reviewed("prf_a", state, as_of)], MODEL, as_of, RULES, HORIZON)
    changed = announced([event.data for event in events], "prf_a")
    assert float(changed["scores.churn_risk"]) >= RULES.at_risk_churn_risk  # type: ignore[arg-type]
    assert changed["lifecycle_stage"] == "at_risk"


def test_a_profile_without_a_purchase_before_now_keeps_no_scores() -> None:
    as_of = T0
    state = buyer(5)  # a clock ahead: the only order is after the moment scored
    saved, events = rescored([reviewed("prf_a", state, as_of)], MODEL, as_of, RULES, HORIZON)
    assert saved["prf_a"][0].predicted is None
    assert events == []

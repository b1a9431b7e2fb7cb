"""Best-time waits and sends on several channels: the decision, what the run keeps, fallbacks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from libs.common.profiles import ProfileFacts
from services.journey.engine import (
    ChannelRanking,
    Run,
    Steps,
    Timing,
    Trigger,
    advance,
    enter,
    exit_run,
    fall_back,
    leave_wait,
    undeliverable,
)
from services.journey.graph import Journey
from services.journey.learning import (
    CountRow,
    Learning,
    PopulationRow,
    Priors,
    fit_priors,
    people_counts,
)

NOW = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)  # 10:00 in Berlin
EVENING = datetime(2026, 3, 14, 19, 0, tzinfo=UTC)  # 20:00 in Berlin
# Emails at 08:00, 13:00 and 20:00 Berlin time, opened only at 20:00; pushes opened most times.
HISTORY = [
    *(CountRow("prf_1", "email", hour, 6, 5 if hour == 20 else 0) for hour in (8, 13, 20)),
    CountRow("prf_1", "push", 12, 4, 3),
]
BERLINER = ProfileFacts(
    "prf_1", traits={"timezone": "Europe/Berlin", "email": "a@example.com", "push_token": "tok"}
)
OFFER = {"type": "send", "channel": "email", "template_id": "tpl_offer"}
BOTH = {
    "type": "send",
    "channels": [
        {"channel": "email", "template_id": "tpl_email"},
        {"channel": "push", "template_id": "tpl_push"},
    ],
}


def learning(explore_share: float = 0.0) -> Learning:
    return Learning(Priors(), people_counts(HISTORY), explore_share)


def start(
    nodes: dict[str, Any],
    facts: ProfileFacts = BERLINER,
    *,
    explore_share: float = 0.0,
    paused: bool = False,
) -> tuple[Journey, Run, Steps]:
    journey = Journey.parse(
        "jrn_t", 1, {"entry": {"segment": "seg"}, "start": next(iter(nodes)), "nodes": nodes}
    )
    steps = Steps()
    run = enter(journey, "prf_1", 1, Trigger("ce_1", NOW), steps)
    go_on(journey, run, steps, facts, explore_share=explore_share, paused=paused)
    return journey, run, steps


def go_on(
    journey: Journey,
    run: Run,
    steps: Steps,
    facts: ProfileFacts = BERLINER,
    *,
    explore_share: float = 0.0,
    paused: bool = False,
) -> None:
    advance(
        journey,
        run,
        facts,
        NOW,
        steps,
        paused=paused,
        step_limit=50,
        learning=learning(explore_share),
    )


def best_time_wait(next_node: str = "offer") -> dict[str, Any]:
    return {"type": "wait", "best_time": {"channel": "email", "within": "PT24H"}, "next": next_node}


def test_a_best_time_wait_wakes_at_the_persons_hour_and_logs_the_decision() -> None:
    _, run, steps = start({"evening": best_time_wait(), "offer": OFFER})
    assert (run.status, run.node_id, run.due_at) == ("waiting", "evening", EVENING)
    assert run.timing == Timing("evening", targeted=True)
    [decision] = steps.decisions
    assert (decision.kind, decision.node_id, decision.channel) == ("send_time", "evening", "email")
    assert (decision.hour, decision.wake_at) == (20, EVENING)
    assert (decision.explored, decision.probability) == (False, 1.0)
    assert (decision.decided_at, decision.run) == (NOW, 1)


def test_the_send_after_a_best_time_wait_is_targeted() -> None:
    journey, run, steps = start({"evening": best_time_wait(), "offer": OFFER})
    leave_wait(journey, run, steps, "fired")
    go_on(journey, run, steps)
    [(_, send)] = steps.sends
    assert send.targeted
    assert (run.status, run.timing) == ("completed", None)


def test_an_explored_hour_is_logged_with_its_probability_and_its_send_is_not_targeted() -> None:
    journey, run, steps = start({"evening": best_time_wait(), "offer": OFFER}, explore_share=1.0)
    [decision] = steps.decisions
    assert decision.explored
    assert decision.probability == pytest.approx(1 / 24)
    leave_wait(journey, run, steps, "fired")
    go_on(journey, run, steps, explore_share=1.0)
    [(_, send)] = steps.sends
    assert not send.targeted


def test_a_wait_after_the_timed_send_ends_the_timing() -> None:
    offer = {**OFFER, "next": "pause"}
    pause = {"type": "wait", "duration": "PT1H", "next": "again"}
    nodes = {"evening": best_time_wait(), "offer": offer, "pause": pause, "again": OFFER}
    journey, run, steps = start(nodes)
    leave_wait(journey, run, steps, "fired")
    go_on(journey, run, steps)
    assert (run.node_id, run.timing) == ("pause", None)
    leave_wait(journey, run, steps, "fired")
    go_on(journey, run, steps)
    assert [send.targeted for _, send in steps.sends] == [True, False]


def test_a_send_at_best_time_waits_first_then_sends_once() -> None:
    journey, run, steps = start({"offer": {**OFFER, "at_best_time_within": "PT24H"}})
    assert (run.status, run.node_id, run.due_at) == ("waiting", "offer", EVENING)
    assert steps.sends == []
    leave_wait(journey, run, steps, "fired")
    go_on(journey, run, steps)
    [(_, send)] = steps.sends
    assert send.targeted and send.option.channel == "email"
    assert run.status == "completed"
    assert steps.counters[("jrn_t", 1, "offer", "entered")] == 1
    assert steps.counters[("jrn_t", 1, "offer", "completed")] == 1


def test_a_timed_send_held_by_a_pause_goes_out_on_resume_untargeted() -> None:
    journey, run, steps = start({"offer": {**OFFER, "at_best_time_within": "PT24H"}})
    leave_wait(journey, run, steps, "fired")
    go_on(journey, run, steps, paused=True)
    assert run.status == "held"
    go_on(journey, run, steps)
    [(_, send)] = steps.sends
    assert not send.targeted
    assert steps.counters[("jrn_t", 1, "offer", "entered")] == 1


def test_a_send_on_several_channels_takes_the_engaged_one_and_keeps_the_ranking() -> None:
    _, run, steps = start({"offer": BOTH})
    [(_, send)] = steps.sends
    assert (send.option.channel, send.option.template_id) == ("push", "tpl_push")
    assert send.idempotency_key == "jrn_t:v1:offer:prf_1:1"
    assert run.channels == {"offer": ChannelRanking(["push", "email"], 1, targeted=False)}
    [decision] = steps.decisions
    assert (decision.kind, decision.channel, decision.ranking) == (
        "channel",
        "push",
        ("push", "email"),
    )
    assert decision.probabilities == {"email": 0.0, "push": 1.0}
    assert decision.request_id == send.request_id == run.requests["offer"]


def test_a_channel_without_an_address_is_neither_chosen_nor_a_fallback() -> None:
    email_only = ProfileFacts("prf_1", traits={"email": "a@example.com", "push_token": " "})
    _, run, steps = start({"offer": BOTH}, email_only)
    [(_, send)] = steps.sends
    assert send.option.channel == "email"
    assert run.channels["offer"].ranking == ["email"]


def test_a_profile_with_no_address_for_any_channel_is_sent_nothing() -> None:
    _, run, steps = start({"offer": BOTH}, ProfileFacts("prf_1"))
    assert (steps.sends, steps.decisions) == ([], [])
    assert run.status == "completed"
    assert steps.counters[("jrn_t", 1, "offer", "unreachable")] == 1


def test_an_undeliverable_message_falls_back_to_the_next_channel_until_none_is_left() -> None:
    journey, run, steps = start({"offer": BOTH})
    first = run.requests["offer"]
    # The next channel's request carries the facts as they are when it is asked for.
    renamed = ProfileFacts("prf_1", traits={**BERLINER.traits, "first_name": "Lena"})
    assert fall_back(journey, run, renamed, "offer", first, steps)
    _, second = steps.sends[1]
    assert (second.option.channel, second.option.template_id) == ("email", "tpl_email")
    assert second.idempotency_key == "jrn_t:v1:offer:prf_1:1:email"
    assert second.profile.traits == renamed.traits
    assert run.requests["offer"] == second.request_id != first
    assert steps.counters[("jrn_t", 1, "offer", "fallbacks")] == 1
    assert not fall_back(journey, run, BERLINER, "offer", first, steps)  # an earlier message
    assert not fall_back(journey, run, BERLINER, "offer", second.request_id, steps)  # none left
    assert len(steps.sends) == 2


def test_an_exited_run_does_not_fall_back() -> None:
    journey, run, steps = start({"offer": BOTH})
    exit_run(run, steps, "goal")
    assert not fall_back(journey, run, BERLINER, "offer", run.requests["offer"], steps)


@pytest.mark.parametrize(
    ("outcome", "reason", "retryable", "expected"),
    [
        ("suppressed", "consent", None, True),
        ("suppressed", "unsubscribed", None, True),
        ("suppressed", "frequency_cap", None, False),
        ("suppressed", "quiet_hours", None, False),
        ("failed", None, False, True),
        ("failed", None, True, False),
        ("delivered", None, None, False),
    ],
)
def test_only_outcomes_about_the_channel_call_for_the_next_one(
    outcome: str, reason: str | None, retryable: bool | None, expected: bool
) -> None:
    assert undeliverable(outcome, reason=reason, retryable=retryable) is expected


def test_the_same_step_of_the_same_run_decides_the_same_way() -> None:
    def explored(seed: str) -> bool:
        return learning(0.5).channel("prf_1", ["email", "push"], ["email", "push"], seed).explored

    assert len({explored("jrn_t:1:offer:prf_1:1") for _ in range(10)}) == 1
    assert len({explored(f"jrn_t:1:offer:prf_1:{run}") for run in range(10)}) == 2


def test_fitted_priors_know_each_channel_and_start_an_unknown_one_flat() -> None:
    priors = fit_priors(HISTORY, [])
    assert set(priors.hours) == set(priors.channels) == {"email", "push"}
    assert priors.channels["push"].mean > priors.channels["email"].mean
    flat = priors.hour_prior("sms").curve
    assert flat.min() == flat.max()


def test_the_hour_curve_follows_the_untargeted_sends_only() -> None:
    untargeted = [PopulationRow("email", 20, 200, 60), PopulationRow("email", 8, 200, 4)]
    curve = fit_priors([], untargeted).hour_prior("email").curve
    assert curve[20] > curve[8]
    # The person's counts (engaged at 20:00 only) move the strength, not the curve.
    assert fit_priors(HISTORY, []).hour_prior("email").curve.std() == 0

"""Moving runs through journeys: branches, splits, waits, wait_for, keys and re-entry."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from libs.common.profiles import ProfileFacts, apply_change
from services.journey.engine import (
    JOURNEY,
    Run,
    Steps,
    Trigger,
    advance,
    choose_arm,
    enter,
    idempotency_key,
    leave_wait,
    may_enter,
    next_time_of_day,
    reach_goal,
    waits_for_event,
    waits_for_outcome,
)
from services.journey.graph import Journey, Split
from tests.unit.journey.fixtures import welcome

NOW = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)


def start(
    definition: dict[str, Any],
    facts: ProfileFacts | None = None,
    *,
    number: int = 1,
    paused: bool = False,
    trigger: Trigger | None = None,
) -> tuple[Journey, Run, Steps]:
    journey = Journey.parse("jrn_t", 2, definition)
    steps = Steps()
    run = enter(journey, "prf_1", number, trigger or Trigger("ce_1", NOW), steps)
    advance(journey, run, facts or ProfileFacts("prf_1"), NOW, steps, paused=paused, step_limit=50)
    return journey, run, steps


def test_idempotency_key_names_journey_version_node_profile_and_run() -> None:
    assert idempotency_key("jrn_winback", 4, "send_coupon", "prf_9", 2) == (
        "jrn_winback:v4:send_coupon:prf_9:2"
    )


def test_entering_sends_and_waits_for_the_click() -> None:
    trigger = Trigger("ce_1", NOW, "cart_abandoned", {"items": 2})
    _, run, steps = start(welcome(), trigger=trigger)
    assert (run.status, run.node_id) == ("waiting", "wait_click")
    assert run.due_at == NOW + timedelta(days=3)
    [(_, send)] = steps.sends
    assert send.idempotency_key == "jrn_t:v2:send_welcome:prf_1:1"
    assert send.variables["event"] == {"event": "cart_abandoned", "properties": {"items": 2}}
    assert send.variables["journey"] == {"id": "jrn_t", "version": 2, "node": "send_welcome"}
    assert run.requests == {"send_welcome": send.request_id}
    assert steps.counters[("jrn_t", 2, JOURNEY, "entered")] == 1
    assert steps.counters[("jrn_t", 2, "send_welcome", "completed")] == 1


def test_a_send_carries_the_profile_as_it_stands_when_the_message_is_asked_for() -> None:
    facts = ProfileFacts(
        "prf_1",
        traits={"email": "li@example.com", "first_name": "Li"},
        tags=["vip"],
        lifecycle_stage="active",
        scores={"rfm": 455},
        top_category="oolong",
    )
    _, _, steps = start(welcome(), facts)
    apply_change(facts, "traits.first_name", "Wei")  # later in the batch: not in the request
    apply_change(facts, "tags", ["vip", "tea_lover"])
    [(_, send)] = steps.sends
    assert send.profile.model_dump() == {
        "traits": {"email": "li@example.com", "first_name": "Li"},
        "tags": ["vip"],
        "lifecycle_stage": "active",
        "scores": {"rfm": 455},
        "top_category": "oolong",
    }


def test_a_click_on_this_runs_message_takes_the_matched_path_and_the_branch() -> None:
    vip = ProfileFacts("prf_1", tags=["vip"])
    journey, run, steps = start(welcome(), vip)
    request = run.requests["send_welcome"]
    assert not waits_for_outcome(journey, run, "clicked", "send_welcome", "req_other")
    assert not waits_for_outcome(journey, run, "opened", "send_welcome", request)
    assert waits_for_outcome(journey, run, "clicked", "send_welcome", request)
    leave_wait(journey, run, steps, "matched")
    advance(journey, run, vip, NOW, steps, paused=False, step_limit=50)
    assert [step.node.id for _, step in steps.updates] == ["tag_engaged"]
    assert (run.status, run.exit_reason) == ("exited", "exit_node")
    assert steps.counters[("jrn_t", 2, "wait_click", "matched")] == 1


def test_a_timeout_takes_the_timeout_path() -> None:
    journey, run, steps = start(welcome())
    leave_wait(journey, run, steps, "timed_out")
    advance(journey, run, ProfileFacts("prf_1"), NOW, steps, paused=False, step_limit=50)
    assert [step.node.id for _, step in steps.sends] == ["send_welcome", "nudge"]
    assert run.status == "completed"
    assert steps.counters[("jrn_t", 2, "wait_click", "timed_out")] == 1


def test_the_branch_default_is_taken_when_no_condition_holds() -> None:
    journey, run, steps = start(welcome())
    leave_wait(journey, run, steps, "matched")
    advance(journey, run, ProfileFacts("prf_1"), NOW, steps, paused=False, step_limit=50)
    assert steps.updates == []
    assert run.exit_reason == "exit_node"


def test_a_branch_can_read_the_triggering_events_properties() -> None:
    definition = welcome(start="big_cart")
    definition["nodes"]["big_cart"] = {
        "type": "branch",
        "branches": [
            {
                "condition": {"event_property": "total", "op": "gte", "value": 100},
                "next": "send_welcome",
            }
        ],
        "default": "done",
    }
    _, big, _ = start(definition, trigger=Trigger("ce", NOW, "cart", {"total": 150}))
    _, small, _ = start(definition, trigger=Trigger("ce", NOW, "cart", {"total": 20}))
    assert big.node_id == "wait_click"
    assert small.exit_reason == "exit_node"


def split_journey(weights: tuple[float, float]) -> dict[str, Any]:
    definition = welcome(start="ab")
    definition["nodes"]["ab"] = {
        "type": "split",
        "arms": [
            {"name": "a", "weight": weights[0], "next": "send_welcome"},
            {"name": "b", "weight": weights[1], "next": "done"},
        ],
    }
    return definition


def test_a_split_is_deterministic_per_profile_and_run_and_recorded() -> None:
    _, first, steps = start(split_journey((50, 50)))
    _, again, _ = start(split_journey((50, 50)))
    assert first.arms == again.arms
    arm = first.arms["ab"]
    assert steps.counters[("jrn_t", 2, "ab", f"arm:{arm}")] == 1


def test_split_arms_follow_their_weights() -> None:
    journey = Journey.parse("jrn_t", 1, split_journey((80, 20)))
    split = journey.nodes["ab"]
    assert isinstance(split, Split)
    picks: Counter[str] = Counter()
    for number in range(1, 4001):
        run = enter(journey, f"prf_{number}", 1, Trigger(None, NOW), Steps())
        picks[choose_arm(split, run).name] += 1
    assert 0.77 < picks["a"] / 4000 < 0.83


def test_a_paused_journey_holds_runs_at_their_next_send() -> None:
    _, run, steps = start(welcome(), paused=True)
    assert (run.status, run.node_id) == ("held", "send_welcome")
    assert steps.sends == []


def test_an_exit_condition_ends_the_run_before_the_next_node() -> None:
    definition = welcome(exit={"condition": {"tag": "unsubscribed"}})
    _, run, steps = start(definition, ProfileFacts("prf_1", tags=["unsubscribed"]))
    assert (run.status, run.exit_reason) == ("exited", "exit_condition")
    assert steps.sends == []


def test_the_step_limit_stops_a_runaway_run() -> None:
    journey = Journey.parse("jrn_t", 1, welcome())
    steps = Steps()
    run = enter(journey, "prf_1", 1, Trigger(None, NOW), steps)
    advance(journey, run, ProfileFacts("prf_1"), NOW, steps, paused=False, step_limit=1)
    assert run.exit_reason == "step_limit"


def test_a_goal_is_counted_and_ends_the_run_when_configured() -> None:
    definition = welcome(goal={"event": "order_completed", "within": "P7D", "exit": True})
    journey, run, steps = start(definition)
    reach_goal(journey, run, NOW, steps)
    assert run.goal_reached_at == NOW
    assert (run.status, run.exit_reason) == ("exited", "goal")
    assert steps.counters[("jrn_t", 2, JOURNEY, "goal_reached")] == 1
    assert steps.counters[("jrn_t", 2, "wait_click", "goal_reached")] == 1


def test_wait_for_an_event_matches_on_name_and_filters() -> None:
    definition = welcome()
    definition["nodes"]["wait_click"] = {
        "type": "wait_for",
        "event": "order_completed",
        "where": [{"property": "total", "op": "gte", "value": 50}],
        "timeout": "PT1H",
        "next": "vip_or_not",
        "timeout_next": "nudge",
    }
    journey, run, _ = start(definition)
    assert waits_for_event(journey, run, "order_completed", {"total": 60})
    assert not waits_for_event(journey, run, "order_completed", {"total": 10})
    assert not waits_for_event(journey, run, "page", {"total": 60})


def finished(entered_at: datetime, status: str = "completed") -> Run:
    return Run("jrn_t", 1, "prf_1", 1, None, status, entered_at, Trigger(None, entered_at))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reentry", "previous", "allowed"),
    [
        ({"rule": "never"}, None, True),
        ({"rule": "never"}, finished(NOW - timedelta(days=30)), False),
        ({"rule": "always"}, finished(NOW - timedelta(seconds=1)), True),
        ({"rule": "always"}, finished(NOW, status="waiting"), False),
        ({"rule": "after", "cooldown": "P7D"}, finished(NOW - timedelta(days=6)), False),
        ({"rule": "after", "cooldown": "P7D"}, finished(NOW - timedelta(days=7)), True),
    ],
)
def test_reentry_rules(reentry: dict[str, Any], previous: Run | None, allowed: bool) -> None:
    journey = Journey.parse("jrn_t", 1, welcome(reentry=reentry))
    assert may_enter(journey, previous, NOW) is allowed


def test_wait_until_a_time_of_day_in_the_profiles_time_zone() -> None:
    # 09:00 UTC is 17:00 in Shanghai: 09:30 there is tomorrow, 01:30 UTC.
    due = next_time_of_day(NOW, time(9, 30), "Asia/Shanghai")
    assert due == datetime(2026, 3, 15, 1, 30, tzinfo=UTC)
    assert next_time_of_day(NOW, time(10, 0), None) == datetime(2026, 3, 14, 10, tzinfo=UTC)
    assert next_time_of_day(NOW, time(10, 0), "Not/AZone") == datetime(2026, 3, 14, 10, tzinfo=UTC)


def test_wait_until_keeps_the_wall_time_across_a_dst_change() -> None:
    # New York springs forward on 2026-03-08: 09:00 is 14:00 UTC before and 13:00 UTC after.
    before = datetime(2026, 3, 7, 15, 0, tzinfo=UTC)  # 10:00 EST on the 7th
    assert next_time_of_day(before, time(9, 0), "America/New_York") == datetime(
        2026, 3, 8, 13, 0, tzinfo=UTC
    )


def test_wait_until_a_wall_time_skipped_by_dst_lands_after_the_gap() -> None:
    before = datetime(2026, 3, 8, 5, 0, tzinfo=UTC)  # 00:00 EST on the 8th
    due = next_time_of_day(before, time(2, 30), "America/New_York")
    assert due == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)  # 03:30 EDT


def test_wait_until_an_ambiguous_wall_time_is_its_first_occurrence() -> None:
    before = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # 00:00 EDT on 1 November
    due = next_time_of_day(before, time(1, 30), "America/New_York")
    assert due == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT, before falling back

"""Validating a journey graph: every kind of mistake is refused, naming where it is."""

from __future__ import annotations

import json
from datetime import time, timedelta
from pathlib import Path
from typing import Any

import pytest

from libs.common.events import ContactRule
from services.journey.conditions import InvalidDefinition
from services.journey.graph import BestTime, Journey, Send, SendOption, Wait, WaitFor
from services.journey.schemas import GRAPH_FIELDS
from tests.unit.journey.fixtures import welcome, with_node


def error_path(definition: Any) -> str:
    with pytest.raises(InvalidDefinition) as raised:
        Journey.parse("jrn_t", 1, definition)
    return raised.value.path


def test_a_valid_journey_parses_into_typed_nodes() -> None:
    journey = Journey.parse("jrn_t", 3, welcome())
    assert journey.version == 3
    assert journey.entry.segment == "seg_new"
    assert isinstance(journey.nodes["send_welcome"], Send)
    wait_click = journey.nodes["wait_click"]
    assert isinstance(wait_click, WaitFor)
    assert wait_click.timeout == timedelta(days=3)
    assert (wait_click.next, wait_click.timeout_next) == ("vip_or_not", "nudge")
    assert [node.id for node in journey.sends()] == ["send_welcome", "nudge"]


def test_a_wait_takes_a_duration_or_a_time_of_day() -> None:
    definition = welcome(start="pause")
    definition["nodes"]["pause"] = {"type": "wait", "until": "09:30", "next": "send_welcome"}
    pause = Journey.parse("jrn_t", 1, definition).nodes["pause"]
    assert isinstance(pause, Wait)
    assert pause.until == time(9, 30)


def test_an_unknown_next_node_is_named() -> None:
    definition = welcome()
    definition["nodes"]["tag_engaged"]["next"] = "nowhere"
    assert error_path(definition) == "nodes.tag_engaged.next"


def test_an_unknown_branch_target_is_named() -> None:
    definition = welcome()
    definition["nodes"]["vip_or_not"]["branches"][0]["next"] = "nowhere"
    assert error_path(definition) == "nodes.vip_or_not.branches[0].next"


def test_an_unreachable_node_is_named() -> None:
    assert error_path(with_node("orphan", {"type": "exit"})) == "nodes.orphan"


def test_a_cycle_without_a_wait_is_refused_at_a_node_on_it() -> None:
    definition = welcome()
    definition["nodes"]["tag_engaged"]["next"] = "vip_or_not"
    assert error_path(definition) in {"nodes.vip_or_not", "nodes.tag_engaged"}


def test_a_cycle_through_a_wait_is_allowed() -> None:
    definition = welcome()
    definition["nodes"]["nudge"]["next"] = "wait_click"
    Journey.parse("jrn_t", 1, definition)


def test_a_missing_entry_is_refused() -> None:
    assert error_path(welcome(entry=None)) == "entry"
    assert error_path(welcome(entry={"segment": "s", "event": "e"})) == "entry"


def test_a_missing_or_unknown_start_is_refused() -> None:
    assert error_path(welcome(start=None)) == "start"
    assert error_path(welcome(start="nowhere")) == "start"


@pytest.mark.parametrize("duration", ["P", "PT", "P1Y", "P1M", "30 days", "P0D", "PT0S", 5, None])
def test_a_bad_duration_names_its_node(duration: Any) -> None:
    node = {"type": "wait", "duration": duration, "next": "done"}
    definition = with_node("pause", node)
    definition["nodes"]["tag_engaged"]["next"] = "pause"
    assert error_path(definition) == "nodes.pause.duration"


def test_a_bad_time_of_day_names_its_node() -> None:
    definition = with_node("pause", {"type": "wait", "until": "25:00", "next": "done"})
    definition["nodes"]["tag_engaged"]["next"] = "pause"
    assert error_path(definition) == "nodes.pause.until"


def test_a_bad_template_id_names_its_node() -> None:
    definition = welcome()
    definition["nodes"]["send_welcome"]["template_id"] = ""
    assert error_path(definition) == "nodes.send_welcome.template_id"


def test_a_wait_for_outcome_must_name_a_send_node() -> None:
    definition = welcome()
    definition["nodes"]["wait_click"]["node"] = "vip_or_not"
    assert error_path(definition) == "nodes.wait_click.node"


def test_an_unknown_outcome_is_refused() -> None:
    definition = welcome()
    definition["nodes"]["wait_click"]["outcome"] = ["clicked"]
    assert error_path(definition) == "nodes.wait_click.outcome"


def test_a_bad_condition_names_the_place_in_the_tree() -> None:
    definition = welcome()
    definition["nodes"]["vip_or_not"]["branches"][0]["condition"] = {
        "all": [{"tag": "vip"}, {"trait": "plan", "op": "gt", "value": [1]}]
    }
    assert error_path(definition) == "nodes.vip_or_not.branches[0].condition.all[1].value"


def test_an_unknown_node_type_and_field_are_named() -> None:
    assert error_path(with_node("x", {"type": "teleport"})) == "nodes.x.type"
    definition = welcome()
    definition["nodes"]["done"]["colour"] = "red"
    assert error_path(definition) == "nodes.done.colour"


def test_split_weights_must_be_positive() -> None:
    definition = welcome(start="ab")
    definition["nodes"]["ab"] = {
        "type": "split",
        "arms": [{"name": "a", "weight": 0, "next": "send_welcome"}],
    }
    assert error_path(definition) == "nodes.ab.arms[0].weight"


def test_reentry_after_needs_a_cooldown() -> None:
    assert error_path(welcome(reentry={"rule": "after"})) == "reentry.cooldown"
    assert error_path(welcome(reentry={"rule": "sometimes"})) == "reentry.rule"


def test_deep_nesting_is_refused_rather_than_recursed() -> None:
    condition: Any = {"tag": "vip"}
    for _ in range(200):
        condition = {"not": condition}
    definition = welcome()
    definition["nodes"]["vip_or_not"]["branches"][0]["condition"] = condition
    with pytest.raises(InvalidDefinition):
        Journey.parse("jrn_t", 1, definition)


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, float("inf"), "a\x00b", "\ud800"])
def test_values_that_cannot_be_stored_or_sent_are_refused(value: Any) -> None:
    definition = welcome()
    definition["nodes"]["send_welcome"]["variables"] = {"x": [value]}
    with pytest.raises(InvalidDefinition):
        Journey.parse("jrn_t", 1, definition)


def test_the_documented_example_is_a_valid_journey() -> None:
    docs = (Path(__file__).parents[3] / "docs" / "journey.md").read_text()
    # The body of the example's `curl …/journeys -d '…'` (which tests/integration/docs runs).
    command = docs.split("localhost:8104/journeys \\\n", 1)[1]
    body = json.loads(command.split("-d '", 1)[1].split("'\n", 1)[0])
    graph = {key: value for key, value in body.items() if key in GRAPH_FIELDS}
    journey = Journey.parse(body["id"], 1, graph)
    assert {node.id for node in journey.sends()} == {"send_coupon", "send_thanks", "nudge"}


def best_time_journey(wait: Any) -> dict[str, Any]:
    definition = welcome(start="evening")
    definition["nodes"]["evening"] = {"type": "wait", "best_time": wait, "next": "send_welcome"}
    return definition


def test_a_wait_may_take_the_persons_best_time_within_a_window() -> None:
    definition = best_time_journey({"channel": "email", "within": "PT24H"})
    evening = Journey.parse("jrn_t", 1, definition).nodes["evening"]
    assert isinstance(evening, Wait)
    assert evening.best_time == BestTime("email", timedelta(hours=24))
    assert Journey.parse("jrn_t", 1, definition).learns
    assert not Journey.parse("jrn_t", 1, welcome()).learns


@pytest.mark.parametrize(
    ("best_time", "field"),
    [
        ("PT24H", "nodes.evening.best_time"),
        ({"within": "PT24H"}, "nodes.evening.best_time.channel"),
        ({"channel": "email"}, "nodes.evening.best_time.within"),
        ({"channel": "email", "within": "P3D"}, "nodes.evening.best_time.within"),
        ({"channel": "email", "within": "PT24H", "hour": 9}, "nodes.evening.best_time.hour"),
    ],
)
def test_a_bad_best_time_names_its_field(best_time: Any, field: str) -> None:
    assert error_path(best_time_journey(best_time)) == field


def test_a_wait_takes_only_one_of_duration_until_and_best_time() -> None:
    definition = best_time_journey({"channel": "email", "within": "PT24H"})
    definition["nodes"]["evening"]["duration"] = "PT1H"
    assert error_path(definition) == "nodes.evening.duration"


def test_a_send_may_name_several_channels_each_with_its_template() -> None:
    definition = welcome()
    definition["nodes"]["nudge"] = {
        "type": "send",
        "channels": [
            {"channel": "push", "template_id": "tpl_push"},
            {"channel": "sms", "template_id": "tpl_sms"},
        ],
    }
    nudge = Journey.parse("jrn_t", 1, definition).nodes["nudge"]
    assert isinstance(nudge, Send)
    assert nudge.options == (
        SendOption("push", "tpl_push", "channels[0].template_id"),
        SendOption("sms", "tpl_sms", "channels[1].template_id"),
    )
    assert nudge.chooses_channel


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"channels": []}, "nodes.nudge.channels"),
        ({"channels": [{"channel": "sms"}]}, "nodes.nudge.channels[0].template_id"),
        (
            {"channels": [{"channel": "sms", "template_id": "a"}] * 2},
            "nodes.nudge.channels[1].channel",
        ),
        (
            {"channels": [{"channel": "sms", "template_id": "a"}], "channel": "sms"},
            "nodes.nudge.channel",
        ),
        (
            {
                "channels": [
                    {"channel": "sms", "template_id": "a"},
                    {"channel": "push", "template_id": "b"},
                ],
                "at_best_time_within": "PT12H",
            },
            "nodes.nudge.at_best_time_within",
        ),
    ],
)
def test_a_bad_send_on_several_channels_names_its_field(changes: Any, field: str) -> None:
    definition = welcome()
    definition["nodes"]["nudge"] = {"type": "send", **changes}
    assert error_path(definition) == field


def test_a_send_at_best_time_waits_so_a_cycle_through_it_is_allowed() -> None:
    definition = welcome()
    definition["nodes"]["nudge"]["at_best_time_within"] = "PT12H"
    definition["nodes"]["nudge"]["next"] = "vip_or_not"
    definition["nodes"]["vip_or_not"]["default"] = "nudge"
    nudge = Journey.parse("jrn_t", 1, definition).nodes["nudge"]
    assert isinstance(nudge, Send)
    assert nudge.best_time == BestTime("sms", timedelta(hours=12))


def test_the_contact_rule_is_part_of_the_version() -> None:
    rule = {"priority": 80, "on_conflict": "defer"}
    journey = Journey.parse("jrn_t", 1, {**welcome(), "contact": rule})
    assert journey.contact == ContactRule(priority=80, on_conflict="defer")
    transactional = {**welcome(), "contact": {"transactional": True}}
    assert Journey.parse("jrn_t", 1, transactional).contact == ContactRule(transactional=True)
    assert Journey.parse("jrn_t", 1, welcome()).contact is None


@pytest.mark.parametrize(
    ("contact", "path"),
    [
        ({"priority": 101}, "contact.priority"),
        ({"priority": "high"}, "contact.priority"),
        ({"priority": True}, "contact.priority"),
        ({"on_conflict": "retry"}, "contact.on_conflict"),
        ({"transactional": "yes"}, "contact.transactional"),
        ({"transactional": True, "priority": 90}, "contact.priority"),
        ({"weight": 1}, "contact.weight"),
        ("high", "contact"),
    ],
)
def test_a_bad_contact_rule_names_its_field(contact: Any, path: str) -> None:
    assert error_path({**welcome(), "contact": contact}) == path

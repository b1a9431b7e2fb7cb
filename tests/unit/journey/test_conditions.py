"""The branch and exit condition language over a profile and the triggering event."""

from __future__ import annotations

from typing import Any

import pytest

from libs.common.profiles import ProfileFacts
from services.journey.conditions import (
    Context,
    InvalidDefinition,
    holds,
    known_stages_only,
    parse_condition,
)

FACTS = ProfileFacts(
    "prf_1",
    traits={"plan": "premium", "age": 34, "city": "Hangzhou"},
    tags=["vip", "tea_lover"],
    lifecycle_stage="active",
    scores={"rfm": 455},
)
EVENT = {"total": 120.5, "cart": {"items": 3}, "category": "tea"}


def check(raw: Any) -> bool:
    return holds(parse_condition(raw, "condition"), Context(FACTS, EVENT))


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"trait": "plan", "op": "exists"}, True),
        ({"trait": "plan", "value": "premium"}, True),
        ({"trait": "plan", "op": "neq", "value": "basic"}, True),
        ({"trait": "age", "op": "gte", "value": 34}, True),
        ({"trait": "age", "op": "lt", "value": 34.0}, False),
        ({"trait": "city", "op": "in", "value": ["Hangzhou", "Beijing"]}, True),
        ({"trait": "city", "op": "contains", "value": "zhou"}, True),
        ({"trait": "missing", "op": "exists"}, False),
        ({"trait": "missing", "op": "neq", "value": 1}, True),
        ({"tag": "vip"}, True),
        ({"tag": "dormant"}, False),
        ({"lifecycle_stage": "active"}, True),
        ({"lifecycle_stage": ["new", "churned"]}, False),
        ({"score": "rfm", "op": "gt", "value": 400}, True),
        ({"event_property": "total", "op": "gte", "value": 100}, True),
        ({"event_property": "cart.items", "op": "eq", "value": 3}, True),
        ({"event_property": "category", "op": "eq", "value": "coffee"}, False),
        ({"all": [{"tag": "vip"}, {"trait": "plan", "value": "premium"}]}, True),
        ({"any": [{"tag": "dormant"}, {"score": "rfm", "op": "lt", "value": 10}]}, False),
        ({"not": {"tag": "dormant"}}, True),
    ],
)
def test_conditions_hold_as_json_compares(condition: Any, expected: bool) -> None:
    assert check(condition) is expected


def test_true_is_not_one() -> None:
    facts = ProfileFacts("p", traits={"flag": True})
    condition = parse_condition({"trait": "flag", "value": 1}, "c")
    assert not holds(condition, Context(facts, {}))


@pytest.mark.parametrize(
    ("condition", "path"),
    [
        ({"trait": "plan", "op": "between", "value": 1}, "c.op"),
        ({"trait": "plan", "op": "in", "value": []}, "c.value"),
        ({"trait": "plan", "op": "exists", "value": 1}, "c.value"),
        ({"all": []}, "c.all"),
        ({"any": [{"tag": ""}]}, "c.any[0].tag"),
        ({"tag": "vip", "extra": 1}, "c.extra"),
        ({"all": [{"tag": "a"}], "any": [{"tag": "b"}]}, "c"),
        ([], "c"),
    ],
)
def test_bad_conditions_name_their_place(condition: Any, path: str) -> None:
    with pytest.raises(InvalidDefinition) as raised:
        parse_condition(condition, "c")
    assert raised.value.path == path


def test_a_definition_sent_now_may_not_name_an_unknown_lifecycle_stage() -> None:
    with known_stages_only(), pytest.raises(InvalidDefinition) as raised:
        parse_condition({"any": [{"tag": "vip"}, {"lifecycle_stage": ["new", "lead"]}]}, "c")
    assert raised.value.path == "c.any[1].lifecycle_stage"
    assert "'lead'" in raised.value.message


def test_a_stored_definition_naming_an_unknown_stage_still_loads_and_matches_nobody() -> None:
    condition = parse_condition({"lifecycle_stage": "customer"}, "c")
    assert not holds(condition, Context(FACTS, EVENT))

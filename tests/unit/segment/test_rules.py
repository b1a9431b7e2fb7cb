"""The condition language: validation errors name the path; evaluation per condition type."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from libs.common.profiles import apply_change
from services.segment.rules import (
    Behaviour,
    InvalidDefinition,
    ProfileFacts,
    SegmentRule,
    matches,
    next_expiry,
    parse_conditions,
    reevaluate,
    references,
)

NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)


def facts(**values: Any) -> ProfileFacts:
    return ProfileFacts("prf_1", **values)


def orders(*ages: timedelta, **properties: Any) -> dict[str, list[Behaviour]]:
    return {"order_completed": [Behaviour(NOW - age, properties) for age in ages]}


def holds(conditions: Any, profile: ProfileFacts, now: datetime = NOW) -> bool:
    return matches(parse_conditions(conditions), profile, now)


@pytest.mark.parametrize(
    ("conditions", "path", "message"),
    [
        (
            {"all": [{"trait": "plan", "value": "x"}, {"event": "o", "within": "30 days"}]},
            "conditions.all[1].within",
            "not an ISO 8601 duration",
        ),
        ({"any": [{"not": {"colour": "red"}}]}, "conditions.any[0].not", "a condition is"),
        ({"trait": "plan", "op": "in", "value": "x"}, "conditions", "`in` needs a non-empty"),
        ({"trait": "plan", "op": "between", "value": 1}, "conditions.op", "Input should be"),
        ({"event": "o", "count": {"gte": 1, "lt": 3}}, "conditions.count", "exactly one"),
        ({"event": "o", "within": "PT0S"}, "conditions.within", "longer than zero"),
        ({"all": []}, "conditions.all", "at least 1"),
        ({"tag": "vip", "extra": 1}, "conditions.extra", "Extra inputs"),
        (
            {"event": "o", "where": [{"property": "p", "op": "gt", "value": [1]}]},
            "conditions.where[0]",
            "compares with a number or a string",
        ),
        (
            {"any": [{"lifecycle_stage": ["new", "customer"]}]},
            "conditions.any[0].lifecycle_stage",
            "unknown lifecycle stage 'customer'",
        ),
    ],
)
def test_invalid_definition_names_the_path(conditions: Any, path: str, message: str) -> None:
    with pytest.raises(InvalidDefinition) as raised:
        parse_conditions(conditions)
    assert raised.value.path == path
    assert message in raised.value.message


@pytest.mark.parametrize("within", ["P30D", "PT3S", "P1W", "PT1H30M", "P1DT2H", "PT0.5S"])
def test_iso_durations_parse(within: str) -> None:
    parse_conditions({"event": "o", "within": within})


@pytest.mark.parametrize(
    ("op", "value", "trait", "expected"),
    [
        ("eq", "premium", "premium", True),
        ("eq", 1, 1.0, True),
        ("eq", 1, True, False),
        ("neq", "premium", "basic", True),
        ("neq", "premium", None, True),
        ("gt", 10, 11, True),
        ("gte", 10, 10, True),
        ("lt", 10, 10, False),
        ("lte", "b", "a", True),
        ("gt", 10, "11", False),
        ("in", ["a", "b"], "b", True),
        ("in", ["a", "b"], "c", False),
        ("contains", "tea", "green tea", True),
        ("contains", "tea", ["tea", "coffee"], True),
        ("contains", 2, [1, 2], True),
        ("contains", "x", 5, False),
        ("exists", None, 0, True),
        ("exists", None, None, False),
    ],
)
def test_trait_operators(op: str, value: Any, trait: Any, expected: bool) -> None:
    traits = {} if trait is None else {"plan": trait}
    condition = {"trait": "plan", "op": op} | ({} if value is None else {"value": value})
    assert holds(condition, facts(traits=traits)) is expected


def test_a_stored_definition_naming_an_unknown_stage_still_loads() -> None:
    rule = SegmentRule.parse("seg_old", 1, {"lifecycle_stage": "customer"})
    assert not matches(rule.condition, facts(lifecycle_stage="active"), NOW)


def test_tag_lifecycle_score_and_membership_conditions() -> None:
    profile = facts(
        tags=["vip"],
        lifecycle_stage="at_risk",
        scores={"rfm": 455, "churn_risk": 0.7},
        segments={"seg_a"},
    )
    assert holds({"tag": "vip"}, profile)
    assert not holds({"tag": "churned"}, profile)
    assert holds({"lifecycle_stage": "at_risk"}, profile)
    assert holds({"lifecycle_stage": ["new", "at_risk"]}, profile)
    assert not holds({"lifecycle_stage": "new"}, profile)
    assert holds({"score": "rfm", "op": "gte", "value": 400}, profile)
    assert not holds({"score": "rfm", "op": "lt", "value": 400}, profile)
    assert holds({"score": "churn_risk", "op": "gte", "value": 0.7}, profile)
    assert not holds({"score": "churn_risk", "op": "gt", "value": 0.7}, profile)
    assert holds({"in_segment": "seg_a"}, profile)
    assert not holds({"in_segment": "seg_b"}, profile)


def test_all_any_not() -> None:
    profile = facts(tags=["vip"])
    vip, churned = {"tag": "vip"}, {"tag": "churned"}
    assert holds({"all": [vip, {"not": churned}]}, profile)
    assert not holds({"all": [vip, churned]}, profile)
    assert holds({"any": [churned, vip]}, profile)
    assert not holds({"any": [churned]}, profile)


def test_event_count_within_window_counts_by_event_time() -> None:
    rule = {"event": "order_completed", "count": {"gte": 2}, "within": "P30D"}
    assert holds(rule, facts(behaviours=orders(timedelta(days=1), timedelta(days=29))))
    assert not holds(rule, facts(behaviours=orders(timedelta(days=1), timedelta(days=31))))


def test_window_expiry_removes_member_when_the_older_behaviour_ages_out() -> None:
    condition = parse_conditions(
        {"event": "order_completed", "count": {"gte": 2}, "within": "P30D"}
    )
    profile = facts(behaviours=orders(timedelta(days=1), timedelta(days=20)))
    expiry = next_expiry(condition, profile, NOW)
    assert expiry == NOW + timedelta(days=10)
    assert matches(condition, profile, expiry - timedelta(microseconds=1))
    assert not matches(condition, profile, expiry)


def test_event_where_filters_and_sum() -> None:
    behaviours = {
        "order_completed": [
            Behaviour(NOW, {"category": "tea", "revenue": 120.5}),
            Behaviour(NOW, {"category": "coffee", "revenue": 300}),
            Behaviour(NOW, {"category": "tea", "revenue": "n/a"}),
        ]
    }
    profile = facts(behaviours=behaviours)
    tea = [{"property": "category", "value": "tea"}]
    assert holds({"event": "order_completed", "count": {"eq": 2}, "where": tea}, profile)
    assert holds({"event": "order_completed", "sum": {"property": "revenue", "eq": 420.5}}, profile)
    assert not holds(
        {"event": "order_completed", "sum": {"property": "revenue", "gt": 200}, "where": tea},
        profile,
    )
    assert holds({"not": {"event": "refund_requested"}}, profile)


def test_references_index_a_segment_by_what_it_reads() -> None:
    condition = parse_conditions(
        {
            "all": [
                {"trait": "plan", "value": "premium"},
                {"not": {"tag": "churned"}},
                {"any": [{"event": "order_completed"}, {"in_segment": "seg_a"}]},
            ]
        }
    )
    assert references(condition) == [
        "event:order_completed",
        "segment:seg_a",
        "tag:churned",
        "trait:plan",
    ]


def test_changes_touch_only_what_they_change() -> None:
    profile = facts(tags=["vip"])
    assert apply_change(profile, "traits.plan", "premium") == {"trait:plan"}
    assert apply_change(profile, "tags", ["vip", "tea_lover"]) == {"tag:tea_lover"}
    assert apply_change(profile, "scores.rfm", 400) == {"score:rfm"}
    assert apply_change(profile, "features.orders_30d", 3) == set()
    apply_change(profile, "traits.plan", None)
    assert profile.traits == {}


def test_reevaluate_reports_transitions_only() -> None:
    rule = SegmentRule.parse("seg_p", 2, {"trait": "plan", "value": "premium"})
    profile = facts(traits={"plan": "premium"})
    first = reevaluate([rule], {"prf_1": profile}, {"prf_1": {"trait:plan"}}, NOW)
    assert [(t.segment_id, t.version, t.entered) for t in first.transitions] == [("seg_p", 2, True)]
    again = reevaluate([rule], {"prf_1": profile}, {"prf_1": {"trait:plan"}}, NOW)
    assert again.transitions == []
    untouched = reevaluate([rule], {"prf_1": profile}, {"prf_1": {"tag:vip"}}, NOW)
    assert untouched.transitions == []

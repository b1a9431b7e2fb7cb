"""The shared profile read model: how a change applies, how a merge folds, what events carry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from libs.common.events import (
    BehaviorOccurred,
    ProfileDeleted,
    ProfileMerged,
    ProfileUpdated,
    SegmentEntered,
)
from libs.common.profiles import (
    ProfileFacts,
    apply_change,
    apply_changes,
    carried_changes,
    facts_of,
    merge_facts,
    normalised_tags,
    profiles_named,
    snapshot_of,
)
from tests.events import identified, profile_updated

NOW = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)


def behaviour(profile_id: str, *changes: tuple[str, Any]) -> BehaviorOccurred:
    return identified(profile_id, changes=changes, at=NOW, message_id="m-1").data


def update(profile_id: str, *changes: tuple[str, Any]) -> ProfileUpdated:
    return profile_updated(profile_id, changes=changes, at=NOW).data


@pytest.mark.parametrize(
    ("path", "after", "touched"),
    [
        ("traits.plan", "premium", {"trait:plan"}),
        ("traits.plan", None, {"trait:plan"}),
        ("scores.rfm", 455, {"score:rfm"}),
        ("lifecycle_stage", "active", {"lifecycle"}),
        ("features.top_categories", ["oolong", "green"], {"top_category"}),
        ("features.orders_30d", 3, set()),
        ("traits", {"plan": "premium"}, set()),  # no trait named: not a change the copy keeps
        ("segments", ["seg_vip"], set()),
    ],
)
def test_a_change_touches_the_reference_key_of_what_it_changes(
    path: str, after: Any, touched: set[str]
) -> None:
    assert apply_change(ProfileFacts("prf_1"), path, after) == touched


def test_tags_touch_only_those_added_or_removed() -> None:
    facts = ProfileFacts("prf_1", tags=["tea_lover", "vip"])
    assert apply_change(facts, "tags", ["vip", "new"]) == {"tag:new", "tag:tea_lover"}
    assert facts.tags == ["new", "vip"]
    assert apply_change(facts, "tags", ["new", "vip"]) == set()


def test_changes_set_remove_and_replace_the_facts() -> None:
    facts = ProfileFacts("prf_1", traits={"plan": "basic", "city": "Hangzhou"}, scores={"rfm": 1})
    touched = apply_changes(
        facts,
        [
            ("traits.plan", "premium"),
            ("traits.city", None),
            ("scores.rfm", None),
            ("lifecycle_stage", "at_risk"),
            ("features.top_categories", ["oolong"]),
        ],
    )
    assert touched == {"trait:plan", "trait:city", "score:rfm", "lifecycle", "top_category"}
    assert facts == ProfileFacts(
        "prf_1",
        traits={"plan": "premium"},
        lifecycle_stage="at_risk",
        top_category="oolong",
    )
    apply_changes(facts, [("lifecycle_stage", 3), ("features.top_categories", [])])
    assert (facts.lifecycle_stage, facts.top_category) == (None, None)


@pytest.mark.parametrize(
    ("after", "top"),
    [
        (["oolong", "green"], "oolong"),
        ([], None),
        ([""], None),
        ([7, "oolong"], None),
        ("oolong", None),
        (None, None),
    ],
)
def test_the_top_category_is_the_first_of_the_top_categories(after: Any, top: str | None) -> None:
    facts = ProfileFacts("prf_1", top_category="cups")
    apply_change(facts, "features.top_categories", after)
    assert facts.top_category == top


@pytest.mark.parametrize(
    ("value", "tags"),
    [
        (["vip", "tea_lover", "vip"], ["tea_lover", "vip"]),
        (["b", 1, None, True, "", "a", ["c"]], ["a", "b"]),
        ("vip", []),
        (None, []),
        ({"vip": True}, []),
    ],
)
def test_tags_are_the_distinct_non_empty_strings_sorted(value: Any, tags: list[str]) -> None:
    assert normalised_tags(value) == tags
    facts = ProfileFacts("prf_1", tags=["old"])
    apply_change(facts, "tags", value)
    assert facts.tags == tags


def test_a_merge_keeps_what_the_survivor_knows_and_unites_the_tags() -> None:
    survivor = ProfileFacts("prf_s", traits={"email": "s@example.com"}, tags=["vip"])
    first = ProfileFacts(
        "prf_a",
        traits={"email": "a@example.com", "phone": "+86100"},
        tags=["tea", "vip"],
        lifecycle_stage="active",
        scores={"rfm": 3},
        top_category="oolong",
    )
    second = ProfileFacts(
        "prf_b",
        traits={"phone": "+86200", "city": "Hangzhou"},
        tags=["cups"],
        lifecycle_stage="churned",
        scores={"rfm": 9, "churn_risk": 0.2},
        top_category="cups",
    )
    merge_facts(survivor, [first, second])
    assert survivor == ProfileFacts(
        "prf_s",
        traits={"email": "s@example.com", "phone": "+86100", "city": "Hangzhou"},
        tags=["cups", "tea", "vip"],
        lifecycle_stage="active",
        scores={"rfm": 3, "churn_risk": 0.2},
        top_category="oolong",
    )


def test_a_survivors_own_stage_and_category_win_a_merge() -> None:
    survivor = ProfileFacts("prf_s", lifecycle_stage="new", top_category="green")
    merge_facts(survivor, [ProfileFacts("prf_m", lifecycle_stage="active", top_category="cups")])
    assert (survivor.lifecycle_stage, survivor.top_category) == ("new", "green")


def test_a_behaviour_and_an_update_carry_their_changes_in_order() -> None:
    changes = (("traits.plan", "premium"), ("tags", ["vip"]), ("traits.plan", None))
    assert carried_changes(behaviour("prf_1", *changes)) == list(changes)
    assert carried_changes(update("prf_1", *changes)) == list(changes)
    assert carried_changes(behaviour("prf_1")) == []


def test_the_profiles_named_are_every_events_profile_and_every_merged_one() -> None:
    events = [
        behaviour("prf_b"),
        update("prf_u", ("tags", [])),
        ProfileMerged(
            survivor_id="prf_s",
            merged_ids=["prf_m1", "prf_m2"],
            reason="identify",
            occurred_at=NOW,
        ),
        ProfileDeleted(profile_id="prf_d", erasure_request_id="era_1", requested_at=NOW),
        SegmentEntered(
            segment_id="seg",
            segment_version=1,
            profile_id="prf_e",
            occurred_at=NOW,
            reason="realtime",
        ),
    ]
    assert profiles_named(events) == {
        "prf_b",
        "prf_u",
        "prf_s",
        "prf_m1",
        "prf_m2",
        "prf_d",
        "prf_e",
    }


def test_a_snapshot_is_the_facts_when_taken_and_reads_back_as_them() -> None:
    facts = ProfileFacts(
        "prf_1",
        traits={"first_name": "Li", "timezone": "Asia/Shanghai"},
        tags=["vip"],
        lifecycle_stage="active",
        scores={"rfm": 455},
        top_category="oolong",
    )
    snapshot = snapshot_of(facts)
    assert facts_of("prf_1", snapshot) == facts
    apply_changes(facts, [("traits.first_name", "Wei"), ("tags", []), ("scores.rfm", 1)])
    assert snapshot.traits == {"first_name": "Li", "timezone": "Asia/Shanghai"}
    assert (snapshot.tags, snapshot.scores) == (["vip"], {"rfm": 455})
    assert facts_of("prf_2", None) == ProfileFacts("prf_2")


def test_an_official_account_and_a_mini_program_each_read_their_own_openid() -> None:
    facts = ProfileFacts(
        "prf_1", {"wechat_openid": "o6_account", "wechat_miniprogram_openid": "oM_mini"}
    )
    assert facts.recipient("wechat") == "o6_account"
    assert facts.recipient("wechat_miniprogram") == "oM_mini"
    only_follows = ProfileFacts("prf_2", {"wechat_openid": "o6_account"})
    assert only_follows.can_reach("wechat")
    assert not only_follows.can_reach("wechat_miniprogram")


def test_a_wecom_member_and_a_wecom_customer_each_read_their_own_id() -> None:
    facts = ProfileFacts(
        "prf_1", {"wecom_userid": "lisi", "wecom_external_userid": "wmAbC123customer"}
    )
    assert facts.recipient("wecom") == "lisi"
    assert facts.recipient("wecom_contact") == "wmAbC123customer"
    only_a_member = ProfileFacts("prf_2", {"wecom_userid": "lisi"})
    assert only_a_member.can_reach("wecom")
    assert not only_a_member.can_reach("wecom_contact")

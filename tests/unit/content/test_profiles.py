"""Content and people: the `profile` variable from the facts a request carries, the events
content takes (no `profile.updated`), and decisions following merges and erasures in order."""

from __future__ import annotations

from datetime import UTC, datetime

from libs.common.events import (
    MessageRequested,
    ProfileDeleted,
    ProfileMerged,
    ProfileSnapshot,
    ProfileUpdated,
)
from libs.common.profiles import facts_of
from services.content.handlers import ACCEPTED_TYPES
from services.content.profiles import decision_moves, profile_variable

_AT = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)


def _merge(survivor: str, *merged: str) -> ProfileMerged:
    return ProfileMerged(
        survivor_id=survivor, merged_ids=list(merged), reason="identify", occurred_at=_AT
    )


def _erase(profile_id: str) -> ProfileDeleted:
    return ProfileDeleted(profile_id=profile_id, erasure_request_id="era_1", requested_at=_AT)


def test_content_takes_requests_merges_and_erasures_but_not_profile_updates() -> None:
    assert ProfileUpdated.event_type not in ACCEPTED_TYPES
    assert {
        MessageRequested.event_type,
        ProfileMerged.event_type,
        ProfileDeleted.event_type,
    } <= ACCEPTED_TYPES


def test_the_profile_variable_is_the_facts_the_request_carries() -> None:
    carried = ProfileSnapshot(
        traits={"first_name": "Li", "email": "li@example.com", "timezone": "Asia/Shanghai"},
        tags=["tea_lover"],
        lifecycle_stage="at_risk",
        scores={"rfm": 455},
        top_category="oolong",
    )
    facts = facts_of("prf_li", carried)
    assert profile_variable(facts) == {
        "id": "prf_li",
        "traits": {"first_name": "Li", "email": "li@example.com", "timezone": "Asia/Shanghai"},
        "tags": ["tea_lover"],
        "lifecycle_stage": "at_risk",
        "scores": {"rfm": 455},
        "top_category": "oolong",
    }
    assert facts.recipient("email") == "li@example.com" and facts.timezone == "Asia/Shanghai"


def test_a_request_without_facts_has_an_empty_profile_and_no_address() -> None:
    facts = facts_of("prf_old", None)
    assert profile_variable(facts) == {
        "id": "prf_old",
        "traits": {},
        "tags": [],
        "lifecycle_stage": None,
        "scores": {},
        "top_category": None,
    }
    assert not facts.can_reach("email") and facts.can_reach("webhook")


def test_a_merge_moves_the_merged_profiles_decisions_to_the_survivor() -> None:
    moved, erased = decision_moves([_merge("prf_s", "prf_m", "prf_s")])
    assert moved == {"prf_m": "prf_s"} and erased == []


def test_decisions_follow_merges_and_erasures_in_order() -> None:
    moved, erased = decision_moves(
        [
            _merge("prf_s", "prf_m"),  # prf_m's decisions go to prf_s...
            _erase("prf_s"),  # ...and are erased with it
            _erase("prf_x"),
            _merge("prf_x", "prf_y"),  # prf_x is merged into after its erasure: prf_y's stay
        ]
    )
    assert moved == {"prf_y": "prf_x"}
    assert erased == ["prf_m", "prf_s", "prf_x"]


def test_a_chain_of_merges_ends_at_the_last_survivor() -> None:
    moved, erased = decision_moves([_merge("prf_b", "prf_a"), _merge("prf_c", "prf_b")])
    assert moved == {"prf_a": "prf_c", "prf_b": "prf_c"} and erased == []

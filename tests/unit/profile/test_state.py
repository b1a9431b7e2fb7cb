"""Profile state: traits last-write-wins by event time, tags, counters, merges, changes."""

from __future__ import annotations

from services.profile.features import DAY, FeatureRules
from services.profile.state import Observation, ProfileState, changes

RULES = FeatureRules()
T0 = 1_000 * DAY


def identify(at: float, **traits: object) -> Observation:
    return Observation(event="identify", kind="identify", at=at, traits=traits)


def test_traits_keep_the_latest_write_by_event_time_even_out_of_order() -> None:
    state = ProfileState()
    state.observe(identify(T0 + 20, plan="premium", city="Hangzhou"), RULES)
    state.observe(identify(T0 + 10, plan="basic", name="Li"), RULES)
    assert state.traits == {"plan": "premium", "city": "Hangzhou", "name": "Li"}


def test_an_equal_time_write_replaces_the_trait() -> None:
    state = ProfileState()
    state.observe(identify(T0, plan="basic"), RULES)
    state.observe(identify(T0, plan="premium"), RULES)
    assert state.traits["plan"] == "premium"


def test_seen_times_counters_and_orders() -> None:
    state = ProfileState()
    state.observe(Observation("order_completed", "track", T0 + 5, revenue=20.0), RULES)
    state.observe(Observation("product_viewed", "track", T0, category="tea"), RULES)
    state.observe(Observation("order_completed", "track", T0 + 1, revenue=30.0), RULES)
    assert (state.first_seen, state.last_seen) == (T0, T0 + 5)
    assert state.counters == {"order_completed": 2, "product_viewed": 1}
    assert (state.orders, state.revenue, state.last_order_at) == (2, 50.0, T0 + 5)


def test_tags_come_from_the_tags_trait() -> None:
    state = ProfileState()
    state.observe(identify(T0, tags="vip, tea_lover,vip"), RULES)
    assert state.tags() == ["tea_lover", "vip"]
    state.observe(identify(T0 + 1, tags=["b", "a", 3]), RULES)
    assert state.tags() == ["a", "b"]


def test_absorbing_a_merged_profile_keeps_the_newest_traits_and_sums_counters() -> None:
    survivor, merged = ProfileState(), ProfileState()
    survivor.observe(identify(T0 + 10, plan="basic", city="Hangzhou"), RULES)
    merged.observe(identify(T0 + 20, plan="premium"), RULES)
    merged.observe(Observation("Home", "page", T0 - 5, category="tea"), RULES)
    survivor.absorb(merged, RULES)
    assert survivor.traits == {"plan": "premium", "city": "Hangzhou"}
    assert survivor.counters == {"identify": 2, "Home": 1}
    assert (survivor.first_seen, survivor.last_seen) == (T0 - 5, T0 + 20)
    assert "tea" in survivor.categories


def test_state_survives_its_json_document() -> None:
    state = ProfileState()
    state.observe(identify(T0, plan="basic"), RULES)
    state.observe(Observation("order_completed", "track", T0, revenue=9.0, category="tea"), RULES)
    assert ProfileState.from_json(state.to_json()) == state


def test_changes_list_what_differs_with_before_and_after() -> None:
    state = ProfileState()
    state.observe(identify(T0, plan="basic"), RULES)
    before = state.view(T0, RULES)
    state.observe(identify(T0 + 1, plan="premium", tags="vip"), RULES)
    found = {
        change.field: (change.before, change.after)
        for change in changes(before, state.view(T0, RULES))
    }
    assert found == {
        "traits.plan": ("basic", "premium"),
        "traits.tags": (None, "vip"),
        "tags": ([], ["vip"]),
    }


def test_counters_alone_are_not_a_change() -> None:
    state = ProfileState()
    state.observe(Observation("x", "track", T0), RULES)
    before = state.view(T0, RULES)
    state.observe(Observation("x", "track", T0 + 1), RULES)
    assert changes(before, state.view(T0, RULES)) == []

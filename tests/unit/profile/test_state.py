"""Profile state: traits last-write-wins by event time, tags, counters, merges, changes."""

from __future__ import annotations

from services.profile.features import DAY, FeatureRules
from services.profile.predictions import PurchaseHistory
from services.profile.scoring import PredictedScores
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
    state.predicted = PredictedScores({"p_alive": 1.0, "churn_risk": 0.42}, T0 + 5, 3)
    assert ProfileState.from_json(state.to_json()) == state


def order(at: float, revenue: float) -> Observation:
    return Observation("Order Completed", "track", at, revenue=revenue)


def test_orders_are_purchase_days_and_refunds_only_lower_the_revenue() -> None:
    state = ProfileState()
    state.observe(order(T0, 20.0), RULES)
    state.observe(order(T0 + 3600, 10.0), RULES)  # the same day: one purchase
    state.observe(order(T0 + 4 * DAY, 40.0), RULES)
    state.observe(Observation("Order Refunded", "track", T0 + 5 * DAY, refund=15.0), RULES)
    assert (state.orders, state.revenue) == (3, 55.0)
    history = state.purchase_history(T0 + 10 * DAY)
    assert history == PurchaseHistory(frequency=1, recency=4.0, age=10.0, monetary=40.0)


def test_a_merge_joins_purchase_days_as_if_one_profile_had_bought_it_all() -> None:
    survivor, merged, alone = ProfileState(), ProfileState(), ProfileState()
    for state, at, value in [
        (survivor, T0 + 2 * DAY, 10.0),
        (merged, T0, 5.0),
        (merged, T0 + 2 * DAY + 60, 7.0),
        (survivor, T0 + 9 * DAY, 30.0),
    ]:
        state.observe(order(at, value), RULES)
        alone.observe(order(at, value), RULES)
    survivor.absorb(merged, RULES)
    assert survivor.purchases == alone.purchases
    assert survivor.purchase_history(T0 + 10 * DAY) == PurchaseHistory(2, 9.0, 10.0, 23.5)


def test_predicted_scores_are_reported_as_scores_and_survive_a_later_view() -> None:
    state = ProfileState()
    state.observe(order(T0, 20.0), RULES)
    state.predicted = PredictedScores({"p_alive": 1.0, "churn_risk": 0.42}, T0, 3)
    view = state.view(T0 + 30 * DAY, RULES)
    assert (view["scores.p_alive"], view["scores.churn_risk"]) == (1.0, 0.42)
    aged = {change.field for change in changes(state.view(T0, RULES), view)}
    assert aged == {"lifecycle_stage", "scores.rfm"}  # time alone moves no predictive score


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


def test_outcomes_count_per_channel_and_only_opens_and_clicks_are_engagement() -> None:
    state = ProfileState()
    state.record_outcome("email", "sent", T0)
    state.record_outcome("email", "delivered", T0 + 5)
    state.record_outcome("email", "clicked", T0 + 60)
    state.record_outcome("sms", "sent", T0 + 90)
    assert state.engagement == {
        "email": {"sent": 1, "delivered": 1, "clicked": 1},
        "sms": {"sent": 1},
    }
    assert state.last_engaged_at == T0 + 60
    view = state.view(T0 + 100, RULES)
    assert view["scores.email_clicked"] == 1
    assert view["scores.last_engaged_at"] == T0 + 60


def test_credits_add_their_share_of_the_value_per_currency() -> None:
    state = ProfileState()
    state.record_credit(100.0, "CNY", 0.5)
    state.record_credit(100.0, "CNY", 0.25)
    state.record_credit(None, None, 1.0)
    assert state.attributed_revenue == {"CNY": 75.0}
    assert state.attributed_conversions == 1.75


def test_an_unset_trait_stays_unset_against_an_older_write() -> None:
    state = ProfileState()
    state.set_traits({"plan": "basic"}, T0)
    state.unset_traits(["plan"], T0 + 10)
    state.set_traits({"plan": "trial"}, T0 + 5)
    assert "plan" not in state.traits
    state.set_traits({"plan": "premium"}, T0 + 20)
    assert state.traits["plan"] == "premium"


def test_tag_changes_add_and_remove_on_the_tags_trait() -> None:
    state = ProfileState()
    state.set_traits({"tags": "vip, dormant"}, T0)
    state.change_tags(["winback"], ["dormant"], T0 + 1)
    assert state.tags() == ["vip", "winback"]


def test_a_merge_adds_engagement_and_credits() -> None:
    survivor, merged = ProfileState(), ProfileState()
    survivor.record_outcome("email", "opened", T0)
    merged.record_outcome("email", "opened", T0 + 1)
    merged.record_credit(10.0, "USD", 1.0)
    survivor.absorb(merged, RULES)
    assert survivor.engagement == {"email": {"opened": 2}}
    assert survivor.last_engaged_at == T0 + 1
    assert survivor.attributed_revenue == {"USD": 10.0}


def test_engagement_survives_the_json_round_trip() -> None:
    state = ProfileState()
    state.record_outcome("push", "clicked", T0)
    state.record_credit(5.0, "EUR", 1.0)
    assert ProfileState.from_json(state.to_json()) == state


def test_memberships_are_kept_with_the_state_but_are_no_change_of_its_view() -> None:
    state = ProfileState()
    state.observe(identify(T0, plan="basic"), RULES)
    before = state.view(T0, RULES)
    state.segments["seg_vip"] = 3
    assert changes(before, state.view(T0, RULES)) == []  # segment.v1 announces them
    assert ProfileState.from_json(state.to_json()).segments == {"seg_vip": 3}

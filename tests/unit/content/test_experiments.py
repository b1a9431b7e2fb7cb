"""The service's side of the variant bandit: the context of a send, the evidence per context and
its decay, the policy that chooses, and the promotion each evaluation decides."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from libs.common.events import ConversionAttributed, JourneyRef, MessageClicked, MessageSent
from libs.common.profiles import ProfileFacts
from services.content.bandit import Context, Counts, Evaluation, fit
from services.content.experiments import (
    BANDIT,
    EvidenceRow,
    Experiment,
    PolicyCache,
    VariantPolicy,
    current_split,
    evaluate_experiment,
    evidence_as_of,
    fitted_policy,
    judged,
    rewards_of,
    send_context,
    unknown_context,
    variant_evidence,
    variant_rates,
)
from services.content.templates import TemplateVersion

NOW = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
ACTIVE_TEA = Context("active", "tea", "email", "evening")
JOURNEY = JourneyRef(journey_id="jrn_x", journey_version=1, node_id="send")


def _template(*variants: str, reward: str = "clicks") -> TemplateVersion:
    return TemplateVersion(
        "tpl_x", 1, "email", {}, [{"id": v, "subject": v, "html": v} for v in variants], reward, 0
    )


def _sent(message_id: str, request_id: str, variant_id: str = "a") -> MessageSent:
    return MessageSent(**_outcome(message_id, request_id, variant_id))


def _clicked(message_id: str, request_id: str, variant_id: str = "a") -> MessageClicked:
    return MessageClicked(
        **_outcome(message_id, request_id, variant_id), url="https://shop.example.com"
    )


def _outcome(message_id: str, request_id: str, variant_id: str) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "request_id": request_id,
        "profile_id": "prf_x",
        "channel": "email",
        "journey": JOURNEY,
        "template_id": "tpl_x",
        "template_version": 1,
        "variant_id": variant_id,
        "occurred_at": NOW,
    }


def _conversion(message_id: str, channel: str | None = "email") -> ConversionAttributed:
    return ConversionAttributed(
        conversion_id="cnv_1",
        conversion_name="order_completed",
        profile_id="prf_x",
        message_id=message_id,
        template_id="tpl_x",
        variant_id="a",
        channel=channel,
        attribution_model="linear",
        credit_share=0.5,
        occurred_at=NOW,
    )


# The context of a send.


def test_the_context_is_the_persons_stage_category_and_local_hour_on_the_channel() -> None:
    person = ProfileFacts(
        "prf_x",
        traits={"timezone": "Asia/Shanghai"},
        lifecycle_stage="at_risk",
        top_category="tea",
    )
    # 09:30 UTC is 17:30 in Shanghai: the afternoon, where UTC has the morning.
    assert send_context(person, "sms", NOW) == Context("at_risk", "tea", "sms", "afternoon")


@pytest.mark.parametrize("zone", [None, "Mars/Olympus_Mons", "../etc/passwd", 7])
def test_a_missing_or_unknown_time_zone_counts_as_utc(zone: Any) -> None:
    person = ProfileFacts("prf_x", traits={} if zone is None else {"timezone": zone})
    assert send_context(person, "email", NOW) == Context(None, None, "email", "morning")


# The evidence.


def test_outcomes_count_in_the_context_their_request_was_chosen_in() -> None:
    logged = {"req_1": ACTIVE_TEA.key}
    rewards = rewards_of(
        [
            _sent("msg_1", "req_1"),
            _clicked("msg_1", "req_1"),
            _clicked("msg_1", "req_1"),  # a second click on the message is no second success
            _sent("msg_2", "req_unlogged", "b"),
        ],
        logged,
        {},
    )
    assert [(r.message_id, r.kind, r.variant_id, r.context_key) for r in rewards] == [
        ("msg_1", "trial", "a", ACTIVE_TEA.key),
        ("msg_1", "click", "a", ACTIVE_TEA.key),
        ("msg_2", "trial", "b", unknown_context("email").key),
    ]


def test_a_conversion_counts_in_the_context_of_its_messages_send() -> None:
    earlier = rewards_of([_conversion("msg_1")], {}, {"msg_1": ACTIVE_TEA.key})
    same_batch = rewards_of(
        [_sent("msg_2", "req_2"), _conversion("msg_2")], {"req_2": ACTIVE_TEA.key}, {}
    )
    never_sent = rewards_of([_conversion("msg_3")], {}, {})
    nowhere = rewards_of([_conversion("msg_4", channel=None)], {}, {})
    assert [(r.kind, r.context_key, r.amount) for r in earlier] == [
        ("conversion:cnv_1", ACTIVE_TEA.key, 0.5)
    ]
    assert [r.context_key for r in same_batch] == [ACTIVE_TEA.key, ACTIVE_TEA.key]
    assert [r.context_key for r in never_sent] == [unknown_context("email").key]
    assert nowhere == []


def test_evidence_loses_half_its_weight_per_half_life_from_its_last_update() -> None:
    rows = [
        EvidenceRow(ACTIVE_TEA.key, "a", 100.0, 10.0, 4.0, NOW - timedelta(days=30)),
        EvidenceRow(ACTIVE_TEA.key, "b", 100.0, 10.0, 4.0, NOW),
    ]
    assert evidence_as_of(rows, "clicks", NOW, 30) == {
        (ACTIVE_TEA.key, "a"): Counts(50.0, 5.0),
        (ACTIVE_TEA.key, "b"): Counts(100.0, 10.0),
    }
    conversions = evidence_as_of(rows, "conversions", NOW, 30)
    assert conversions[ACTIVE_TEA.key, "a"] == Counts(50.0, 2.0)


def test_a_variants_evidence_is_summed_over_contexts_for_its_current_variants() -> None:
    rows = [
        EvidenceRow(ACTIVE_TEA.key, "a", 10.0, 4.0, 0.0, NOW),
        EvidenceRow(unknown_context("email").key, "a", 8.0, 2.0, 0.0, NOW),
        EvidenceRow(ACTIVE_TEA.key, "removed", 50.0, 40.0, 0.0, NOW),
    ]
    a, b = variant_evidence(_template("a", "b"), rows, NOW, 30)
    assert (a.variant_id, a.trials, a.successes) == ("a", 18.0, 6.0)
    assert a.posterior_mean == pytest.approx(7 / 20)
    assert (b.variant_id, b.trials, b.successes, b.posterior_mean) == ("b", 0.0, 0.0, 0.5)


def test_a_variants_sends_clicks_and_conversions_are_summed_and_decayed() -> None:
    month_ago = NOW - timedelta(days=30)
    rows = [
        EvidenceRow(ACTIVE_TEA.key, "a", 10.0, 4.0, 1.5, NOW),
        EvidenceRow(unknown_context("email").key, "a", 8.0, 2.0, 0.5, month_ago),
        EvidenceRow(ACTIVE_TEA.key, "removed", 50.0, 40.0, 3.0, NOW),
    ]
    a, b = variant_rates(_template("a", "b"), rows, NOW, 30)
    assert a.variant_id == "a"
    assert (a.sends, a.clicks, a.conversions) == pytest.approx((14.0, 5.0, 1.75))
    assert (b.variant_id, b.sends, b.clicks, b.conversions) == ("b", 0.0, 0.0, 0.0)


# The choice.


def _rows(a: tuple[float, float], b: tuple[float, float]) -> list[EvidenceRow]:
    return [
        EvidenceRow(ACTIVE_TEA.key, "a", a[0], a[1], 0.0, NOW),
        EvidenceRow(ACTIVE_TEA.key, "b", b[0], b[1], 0.0, NOW),
    ]


def test_a_request_draws_the_same_variant_with_the_same_key() -> None:
    policy = fitted_policy(_template("a", "b"), [], None, NOW, 30)
    first = [policy.choose(ACTIVE_TEA, random.Random(f"key-{i}")).variant_id for i in range(50)]
    again = [policy.choose(ACTIVE_TEA, random.Random(f"key-{i}")).variant_id for i in range(50)]
    assert first == again
    assert set(first) == {"a", "b"}  # no evidence: both explored


def test_a_promoted_policy_explores_the_runner_up_at_the_floor_only() -> None:
    promoted = Experiment("tpl_x", ("b", "a"), NOW, 0.0, 1.0, {}, {ACTIVE_TEA.key: "a"}, NOW)
    policy = fitted_policy(_template("a", "b"), _rows((200, 20), (200, 18)), promoted, NOW, 30)
    choices = [policy.choose(ACTIVE_TEA, random.Random(f"key-{i}")) for i in range(2000)]
    assert policy.promoted
    assert {(c.variant_id, c.propensity) for c in choices} == {
        ("a", 1 - BANDIT.exploration_floor),
        ("b", BANDIT.exploration_floor),
    }
    losers = sum(c.variant_id == "b" for c in choices)
    assert 60 <= losers <= 140  # 5 % of 2,000
    exploring = fitted_policy(_template("a", "b"), _rows((200, 20), (200, 18)), None, NOW, 30)
    assert exploring.choose(ACTIVE_TEA, random.Random("key")).probabilities["b"] > 0.2


def test_a_promotion_for_other_variants_does_not_stand() -> None:
    promoted = Experiment("tpl_x", ("a", "b"), NOW, 0.0, 1.0, {}, {ACTIVE_TEA.key: "a"}, NOW)
    policy = fitted_policy(_template("a", "b", "c"), [], promoted, NOW, 30)
    assert not policy.promoted


def test_a_kept_policy_is_used_until_it_expires_or_the_variants_change() -> None:
    clock = [0.0]
    cache = PolicyCache(60, clock=lambda: clock[0])
    template = _template("a", "b")
    policy = VariantPolicy("tpl_x", fit({}, ["a", "b"]), promoted=False)
    cache.keep(template, policy)
    clock[0] = 59.0
    assert cache.get(template) is policy
    assert cache.get(_template("a", "b", "c")) is None
    assert cache.get(_template("a", "b", reward="conversions")) is None
    clock[0] = 60.0
    assert cache.get(template) is None
    cache.keep(template, policy)
    cache.forget("tpl_x")
    assert cache.get(template) is None


# The promotion.


def _evaluation(promoted: bool, value_remaining: float, leaders: dict[str, str]) -> Evaluation:
    return Evaluation(promoted, value_remaining, 0.97, {"a": 0.97, "b": 0.03}, leaders)


def test_the_end_of_an_experiment_promotes_the_winner_with_an_insight() -> None:
    experiment, insight = judged(
        "tpl_x", ["a", "b"], None, _evaluation(True, 0.004, {ACTIVE_TEA.key: "b"}), NOW
    )
    assert experiment.promoted_at == NOW and experiment.winner == "b"
    assert insight is not None and insight.kind == "variant_promoted"
    assert insight.message == (
        "Variant b of template tpl_x was promoted: 95 % sure no variant beats it by more than 1 %."
    )
    assert insight.evidence["probability_best"] == {"a": 0.97, "b": 0.03}


def test_leaders_that_differ_by_context_are_promoted_together() -> None:
    leaders = {ACTIVE_TEA.key: "a", unknown_context("email").key: "b", "x": "a"}
    _, insight = judged("tpl_x", ["a", "b"], None, _evaluation(True, 0.02, leaders), NOW)
    assert insight is not None
    assert insight.message == (
        "The leading variants of template tpl_x were promoted, each where it leads "
        "(contexts: a in 2, b in 1): 95 % sure no variant beats them by more than 2 %."
    )


def test_a_standing_promotion_keeps_its_time_and_says_nothing_new() -> None:
    first, _ = judged("tpl_x", ["a", "b"], None, _evaluation(True, 0.0, {"": "a"}), NOW)
    later = NOW + timedelta(hours=1)
    second, insight = judged("tpl_x", ["a", "b"], first, _evaluation(True, 0.05, {"": "a"}), later)
    assert second.promoted_at == NOW and second.evaluated_at == later
    assert insight is None


def test_a_promotion_whose_winner_changes_is_a_new_promotion() -> None:
    first, _ = judged("tpl_x", ["a", "b"], None, _evaluation(True, 0.0, {"": "a"}), NOW)
    later = NOW + timedelta(days=3)
    moved, insight = judged("tpl_x", ["a", "b"], first, _evaluation(True, 0.0, {"": "b"}), later)
    assert moved.promoted_at == later and moved.winner == "b"
    assert insight is not None and insight.message.startswith("Variant b of template tpl_x")


def test_a_promotion_is_lifted_with_an_insight_when_the_value_remaining_grows() -> None:
    first, _ = judged("tpl_x", ["a", "b"], None, _evaluation(True, 0.0, {"": "a"}), NOW)
    lifted, insight = judged("tpl_x", ["a", "b"], first, _evaluation(False, 0.14, {"": "a"}), NOW)
    assert lifted.promoted_at is None and lifted.winner is None
    assert insight is not None and insight.kind == "promotion_lifted"
    assert insight.message == (
        "The promotion of variant a of template tpl_x was lifted: a variant may now beat it by "
        "14 % (more than 10 %); it is explored again."
    )
    _, because = judged("tpl_x", ["a", "b", "c"], first, _evaluation(False, 0.5, {"": "c"}), NOW)
    assert because is not None and "its variants changed" in because.message


def test_a_clear_winner_ends_the_experiment_and_a_tie_does_not() -> None:
    clear, insight = evaluate_experiment(
        _template("a", "b"), _rows((60, 30), (60, 0)), None, NOW, 30
    )
    assert clear.promoted_at == NOW and clear.winner == "a" and insight is not None
    assert clear.probability_best["a"] > 0.95
    tie, nothing = evaluate_experiment(_template("a", "b"), _rows((60, 6), (60, 6)), None, NOW, 30)
    assert tie.promoted_at is None and nothing is None


def test_the_split_is_the_policys_choice_in_each_context_weighted_by_its_sends() -> None:
    rows = _rows((400, 80), (400, 20))
    split = current_split(_template("a", "b"), rows, None, NOW, 30)
    assert sum(split.values()) == pytest.approx(1.0)
    assert split["a"] > 0.9
    policy = fitted_policy(_template("a", "b"), rows, None, NOW, 30)
    assert split == pytest.approx(policy.choose(ACTIVE_TEA, random.Random("key")).probabilities)
    lagging = EvidenceRow(Context("new", None, "email", "night").key, "b", 400, 80, 0.0, NOW)
    both = current_split(_template("a", "b"), [*rows, lagging], None, NOW, 30)
    assert split["a"] > both["a"] > 0.1


def test_the_split_is_even_before_any_send_and_the_leaders_once_promoted() -> None:
    even = current_split(_template("a", "b"), [], None, NOW, 30)
    assert even["a"] == pytest.approx(0.5, abs=0.05)
    assert sum(even.values()) == pytest.approx(1.0)
    promoted = Experiment("tpl_x", ("a", "b"), NOW, 0.0, 1.0, {}, {ACTIVE_TEA.key: "a"}, NOW)
    split = current_split(_template("a", "b"), _rows((200, 20), (200, 18)), promoted, NOW, 30)
    assert split == pytest.approx(
        {"a": 1 - BANDIT.exploration_floor, "b": BANDIT.exploration_floor}
    )
    assert current_split(_template("a"), [], None, NOW, 30) == {"a": 1.0}

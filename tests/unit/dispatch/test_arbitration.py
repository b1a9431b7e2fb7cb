"""Arbitration: one person's competing messages decided together, by priority, then age."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from libs.common.contact_policy import (
    Arbitration,
    Cap,
    Contender,
    InvalidPolicy,
    Preferences,
    SendPolicy,
    TopicRule,
    TraitAnswers,
    Verdict,
    arbitrate,
    cap_room_at,
    parse_policy,
)

NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
ONE_A_DAY = SendPolicy(caps=(Cap("*", 1, timedelta(days=1)),))


def _message(message_id: str, priority: int = 50, **fields: Any) -> Contender:
    values: dict[str, Any] = {
        "channel": "webhook",
        "requested_at": NOW - timedelta(minutes=5),
        "priority": priority,
    }
    values.update(fields)
    return Contender(message_id, **values)


def _arbitrate(*contenders: Contender, **kwargs: Any) -> dict[str, Verdict]:
    values: dict[str, Any] = {
        "preferences": Preferences(),
        "policy": ONE_A_DAY,
        "sent": [],
        "default_consent": True,
    }
    values.update(kwargs)
    return arbitrate(list(contenders), NOW, **values)


def _actions(verdicts: dict[str, Verdict]) -> dict[str, str]:
    return {message_id: verdict.decision.action for message_id, verdict in verdicts.items()}


def test_the_highest_priority_takes_the_cap_and_the_losers_name_it() -> None:
    low, high, middle = _message("low", 10), _message("high", 90), _message("middle", 50)
    verdicts = _arbitrate(low, high, middle)
    assert _actions(verdicts) == {"high": "send", "low": "suppress", "middle": "suppress"}
    assert verdicts["low"].won_by == high
    assert verdicts["low"].decision.reason == "frequency_cap"
    assert verdicts["high"].won_by is None


def test_a_tie_goes_to_the_message_asked_for_first() -> None:
    later = _message("later", 70, requested_at=NOW - timedelta(minutes=1))
    earlier = _message("earlier", 70, requested_at=NOW - timedelta(minutes=2))
    assert _actions(_arbitrate(later, earlier)) == {"earlier": "send", "later": "suppress"}


def test_a_loser_that_defers_waits_until_the_cap_has_room() -> None:
    winner = _message("winner", 80)
    patient = _message("patient", 20, on_conflict="defer")
    verdicts = _arbitrate(patient, winner)
    assert verdicts["patient"].decision.action == "defer"
    assert verdicts["patient"].decision.until == NOW + timedelta(days=1)
    assert verdicts["patient"].won_by == winner


def test_a_deferral_longer_than_max_defer_drops_the_message() -> None:
    policy = SendPolicy(
        caps=(Cap("*", 1, timedelta(days=1)),),
        arbitration=Arbitration(max_defer=timedelta(hours=12)),
    )
    patient = _message("patient", 20, on_conflict="defer")
    verdicts = _arbitrate(patient, _message("winner", 80), policy=policy)
    assert verdicts["patient"].decision.action == "suppress"


def test_a_cap_filled_by_earlier_sends_names_no_winner() -> None:
    sent = [("webhook", NOW - timedelta(hours=2))]
    verdicts = _arbitrate(_message("late", 99), sent=sent)
    assert verdicts["late"].decision.reason == "frequency_cap"
    assert verdicts["late"].won_by is None


def test_caps_with_room_for_several_send_them_all_by_rank() -> None:
    policy = SendPolicy(caps=(Cap("*", 2, timedelta(days=1)),))
    verdicts = _arbitrate(_message("a", 10), _message("b", 30), _message("c", 20), policy=policy)
    assert _actions(verdicts) == {"b": "send", "c": "send", "a": "suppress"}
    assert verdicts["a"].won_by is not None and verdicts["a"].won_by.message_id == "b"


def test_a_channel_cap_leaves_other_channels_to_their_own_caps() -> None:
    policy = SendPolicy(caps=(Cap("email", 1, timedelta(days=1)),))
    verdicts = _arbitrate(
        _message("mail_high", 90, channel="email"),
        _message("mail_low", 10, channel="email"),
        _message("hook", 5),
        policy=policy,
    )
    assert _actions(verdicts) == {"mail_high": "send", "mail_low": "suppress", "hook": "send"}


def test_transactional_messages_bypass_caps_and_consent_and_take_no_room() -> None:
    receipt = _message("receipt", transactional=True)
    offer = _message("offer", 10)
    full = [("webhook", NOW - timedelta(hours=1))]
    verdicts = _arbitrate(receipt, offer, sent=full, preferences=Preferences({"webhook": False}))
    assert _actions(verdicts) == {"receipt": "send", "offer": "suppress"}
    assert verdicts["offer"].decision.reason == "consent"
    # With room for one: the marketing message still gets it.
    assert _actions(_arbitrate(receipt, offer)) == {"receipt": "send", "offer": "send"}


def test_a_message_without_consent_does_not_take_the_cap_from_one_with_it() -> None:
    preferences = Preferences(unsubscribed=frozenset({"email"}))
    verdicts = _arbitrate(
        _message("unwanted", 90, channel="email"), _message("wanted", 10), preferences=preferences
    )
    assert _actions(verdicts) == {"unwanted": "suppress", "wanted": "send"}
    assert verdicts["unwanted"].decision.reason == "unsubscribed"


def test_a_message_of_a_topic_refused_does_not_take_the_cap_and_names_its_topic() -> None:
    newsletter = TopicRule("newsletter")
    recorded = Preferences(topics={"newsletter": {"webhook": False}})
    verdicts = _arbitrate(
        _message("newsletter", 90, topic=newsletter),
        _message("offer", 10),
        preferences=recorded,
    )
    assert _actions(verdicts) == {"newsletter": "suppress", "offer": "send"}
    assert verdicts["newsletter"].decision.reason == "unsubscribed"
    assert verdicts["newsletter"].decision.topic == "newsletter"
    # A no the message's traits carried holds the same way.
    carried = TraitAnswers(subscriptions={"newsletter": {"*": False}})
    verdicts = _arbitrate(
        _message("newsletter", 90, topic=newsletter, traits=carried), _message("offer", 10)
    )
    assert _actions(verdicts) == {"newsletter": "suppress", "offer": "send"}


def test_a_transactional_message_naming_a_topic_refused_is_sent() -> None:
    recorded = Preferences(topics={"newsletter": {"webhook": False}})
    receipt = _message("receipt", topic=TopicRule("newsletter"), transactional=True)
    assert _actions(_arbitrate(receipt, preferences=recorded)) == {"receipt": "send"}


def test_cap_room_is_when_the_oldest_counted_send_leaves_the_window() -> None:
    caps = [Cap("*", 2, timedelta(days=1))]
    counted = [("sms", NOW - timedelta(hours=3)), ("email", NOW - timedelta(hours=1))]
    assert cap_room_at(caps, NOW, counted) == NOW + timedelta(hours=21)
    assert cap_room_at([Cap("*", 0, timedelta(days=1))], NOW, counted) is None


def test_the_arbitration_setting_parses_and_names_what_is_wrong() -> None:
    policy = parse_policy({"arbitration": {"window": "PT15M", "max_defer": "P3D"}})
    assert policy.arbitration == Arbitration(timedelta(minutes=15), timedelta(days=3))
    assert parse_policy({}).arbitration == Arbitration()
    bad = [
        ({"arbitration": {"window": "15 minutes"}}, "arbitration.window"),
        ({"arbitration": {"window": "P2D"}}, "arbitration.window"),
        ({"arbitration": {"max_defer": "P0D"}}, "arbitration.max_defer"),
        ({"arbitration": {"priority": 1}}, "arbitration"),
        ({"arbitration": "PT15M"}, "arbitration"),
    ]
    for document, path in bad:
        with pytest.raises(InvalidPolicy) as error:
            parse_policy(document)
        assert error.value.path == path

"""What a profile search asks, and how a person's timeline is told from four services."""

from __future__ import annotations

from datetime import UTC, datetime

from services.console.people import Lookup, lookups_for, timeline, unique_profiles


def test_an_empty_search_lists_everyone_and_an_id_is_looked_up_as_one() -> None:
    assert lookups_for("  ") == [Lookup("all")]
    assert lookups_for("prf_01JPB6W5D2") == [Lookup("profile", "prf_01JPB6W5D2")]


def test_type_value_is_asked_as_an_identifier_and_as_a_trait() -> None:
    assert lookups_for("plan:pro") == [
        Lookup("identifier", "plan:pro"),
        Lookup("trait", "plan:pro"),
    ]


def test_a_bare_email_phone_or_id_is_tried_as_each_identifier_it_could_be() -> None:
    assert lookups_for("mei.lin@example.org") == [
        Lookup("identifier", "email:mei.lin@example.org"),
        Lookup("trait", "email:mei.lin@example.org"),
    ]
    assert lookups_for("+86 138 0013 8000")[-1] == Lookup("identifier", "phone:+86 138 0013 8000")
    assert lookups_for("u_60917") == [
        Lookup("identifier", "user_id:u_60917"),
        Lookup("identifier", "anonymous_id:u_60917"),
    ]


def test_profiles_found_by_several_lookups_are_listed_once_in_first_found_order() -> None:
    a, b, c = {"id": "prf_a"}, {"id": "prf_b"}, {"id": "prf_c"}
    assert unique_profiles([[b, a], [a, c]]) == [b, a, c]


def _at(hour: int) -> str:
    return datetime(2026, 12, 1, hour, tzinfo=UTC).isoformat()


def test_the_timeline_is_newest_first_and_tells_each_message_once() -> None:
    events = [
        {
            "kind": "track",
            "event": "Order Completed",
            "occurred_at": _at(9),
            "properties": {"revenue": 42},
        }
    ]
    messages = [
        {
            "message_id": "msg_1",
            "channel": "email",
            "status": "delivered",
            "subject": "Your oolong",
            "template_id": "tpl_tea",
            "variant_id": "var_a",
            "journey": {"journey_id": "jrn_w", "node_id": "send"},
            "error": None,
            "created_at": _at(6),
            "sent_at": _at(7),
        }
    ]
    touches = [
        {
            "message_id": "msg_1",
            "outcome": "message.sent",
            "channel": "email",
            "occurred_at": _at(7),
        },
        {
            "message_id": "msg_1",
            "outcome": "message.clicked",
            "channel": "email",
            "occurred_at": _at(8),
        },
        {"message_id": "msg_0", "outcome": "message.sent", "channel": "sms", "occurred_at": _at(5)},
        {
            "message_id": "msg_1",
            "outcome": "message.failed",
            "channel": "email",
            "occurred_at": _at(7),
        },
    ]
    conversions = [
        {
            "definition_id": "cnv_order",
            "occurred_at": _at(10),
            "value": "42",
            "currency": "EUR",
            "attribution_model": "last_touch",
            "credits": [{"message_id": "msg_1", "share": 1.0}],
        }
    ]
    entries = timeline(events, messages, touches, conversions)
    assert [(e.kind, e.title) for e in entries] == [
        ("conversion", "conversion cnv_order"),
        ("behaviour", "Order Completed"),
        ("outcome", "email message clicked"),
        ("message", "email message delivered"),
        ("outcome", "sms message sent"),
    ]
    assert entries[0].detail == "42 EUR · last_touch: credited to msg_1 (100%)"
    assert entries[1].detail == '{"revenue": 42}'
    assert "“Your oolong”" in entries[3].detail
    assert "journey jrn_w at send" in entries[3].detail


def test_a_call_other_than_a_track_is_named_by_its_kind_and_its_name() -> None:
    events = [
        {"kind": "identify", "event": "identify", "occurred_at": _at(1), "properties": {}},
        {"kind": "page", "event": "Home", "occurred_at": _at(2), "properties": {}},
    ]
    assert [e.title for e in timeline(events, [], [], [])] == ["page: Home", "identify"]

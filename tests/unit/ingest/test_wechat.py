"""WeChat callbacks' pure parts: signatures, the message encryption, pushes into calls."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from services.ingest.wechat import (
    CallbackRefused,
    WechatPush,
    calls_of,
    check_signature,
    check_timestamp,
    decrypt,
    parse_xml,
    signature,
)
from tests.wechat import encrypt, new_aes_key, push_xml

APP = "wx5f2a7c9e1b3d4f60"


def test_signature_is_the_sha1_of_the_sorted_parts() -> None:
    expected = hashlib.sha1(b"1409304348" + b"xxxxxx" + b"xyz").hexdigest()
    assert signature("xyz", "1409304348", "xxxxxx") == expected
    check_signature(expected, "signature", "xyz", "1409304348", "xxxxxx")
    with pytest.raises(CallbackRefused) as refused:
        check_signature(expected, "signature", "other-token", "1409304348", "xxxxxx")
    assert (refused.value.status, refused.value.field) == (401, "signature")


def test_a_timestamp_outside_the_window_is_refused_either_way() -> None:
    assert check_timestamp("1000", 1200.0, 300) == 1000
    for stale in ("600", "1600", "", "12a"):
        with pytest.raises(CallbackRefused) as refused:
            check_timestamp(stale, 1200.0, 300)
        assert (refused.value.status, refused.value.field) == (401, "timestamp")


def test_a_message_encrypted_as_documented_decrypts() -> None:
    key = new_aes_key()
    message = push_xml("o6_bmjrPTlm6_2sgVt7hMZOPfL2M", Event="subscribe")
    assert decrypt(encrypt(message, key, APP), key, APP) == message


def test_a_message_for_another_app_or_key_is_refused() -> None:
    key = new_aes_key()
    message = push_xml("o6_bmjrPTlm6_2sgVt7hMZOPfL2M", Event="subscribe")
    with pytest.raises(CallbackRefused) as other_app:
        decrypt(encrypt(message, key, "wx0000000000000000"), key, APP)
    assert other_app.value.status == 401
    with pytest.raises(CallbackRefused):
        decrypt(encrypt(message, new_aes_key(), APP), key, APP)
    with pytest.raises(CallbackRefused) as not_base64:
        decrypt("not base64 !", key, APP)
    assert (not_base64.value.status, not_base64.value.field) == (400, "Encrypt")


def test_xml_with_a_doctype_is_refused() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xml><A>&a;</A></xml>'
    with pytest.raises(CallbackRefused) as refused:
        parse_xml(bomb)
    assert (refused.value.status, refused.value.field) == (400, "body")
    with pytest.raises(CallbackRefused):
        parse_xml(b"<xml><unclosed></xml>")


def _calls(xml: bytes) -> list[tuple[str, dict[str, object]]]:
    return calls_of(WechatPush.of(parse_xml(xml)), APP)


def test_a_follow_by_qr_code_is_an_identify_and_a_follow_with_its_scene() -> None:
    xml = push_xml(
        "o6_follower",
        Event="subscribe",
        EventKey="qrscene_spring_sale",
        Ticket="gQH47joAAAAA",
        UnionId="oU_union1",
    )
    (identify_kind, identify), (track_kind, track) = _calls(xml)
    assert (identify_kind, track_kind) == ("identify", "track")
    assert identify["anonymousId"] == track["anonymousId"] == "o6_follower"
    assert identify["traits"] == {
        "wechat_openid": "o6_follower",
        "wechat_unionid": "oU_union1",
        "wechat_subscribed": True,
    }
    assert track["event"] == "wechat_follow"
    assert track["properties"] == {"app_id": APP, "scene": "spring_sale", "ticket": "gQH47joAAAAA"}
    assert track["context"]["wechat_unionid"] == "oU_union1"  # type: ignore[index]


@pytest.mark.parametrize(
    ("fields", "event", "properties"),
    [
        ({"Event": "unsubscribe"}, "wechat_unfollow", {}),
        (
            {"Event": "CLICK", "EventKey": "V1001_COUPON"},
            "wechat_menu_click",
            {"key": "V1001_COUPON"},
        ),
        (
            {"Event": "SCAN", "EventKey": "store_42", "Ticket": "t1"},
            "wechat_scan",
            {"scene": "store_42", "ticket": "t1"},
        ),
        (
            {"Event": "VIEW", "EventKey": "https://shop.example.com/"},
            "wechat_menu_view",
            {"url": "https://shop.example.com/"},
        ),
    ],
)
def test_events_become_their_tracks(
    fields: dict[str, Any], event: str, properties: dict[str, str]
) -> None:
    (_, identify), (_, track) = _calls(push_xml("o6_someone", **fields))
    assert track["event"] == event
    assert track["properties"] == {"app_id": APP, **properties}
    assert "wechat_unionid" not in identify["traits"]  # type: ignore[operator]


def test_unfollow_says_the_person_no_longer_follows() -> None:
    (_, identify), _ = _calls(push_xml("o6_leaver", Event="unsubscribe"))
    assert identify["traits"] == {"wechat_openid": "o6_leaver", "wechat_subscribed": False}


def test_a_text_message_is_a_message_track_with_its_text() -> None:
    xml = push_xml("o6_writer", "text", Content="有乌龙茶吗?", MsgId="23648001")
    _, (_, track) = _calls(xml)
    assert track["event"] == "wechat_message"
    assert track["properties"] == {
        "app_id": APP,
        "message_type": "text",
        "text": "有乌龙茶吗?",
        "msg_id": "23648001",
    }


def test_a_push_that_is_no_behaviour_becomes_no_call() -> None:
    assert _calls(push_xml("o6_someone", Event="LOCATION", Latitude="23.1")) == []
    assert _calls(push_xml("o6_someone", Event="TEMPLATESENDJOBFINISH")) == []


def test_a_retried_push_becomes_the_same_message_ids() -> None:
    xml = push_xml("o6_someone", created=1_700_000_000, Event="subscribe")
    first, again = _calls(xml), _calls(xml)
    assert [call["messageId"] for _, call in first] == [call["messageId"] for _, call in again]
    other = _calls(push_xml("o6_someone", created=1_700_000_001, Event="subscribe"))
    assert first[1][1]["messageId"] != other[1][1]["messageId"]


def test_a_push_without_its_sender_is_refused_naming_it() -> None:
    with pytest.raises(CallbackRefused) as refused:
        WechatPush.of({"CreateTime": "1700000000", "MsgType": "event"})
    assert (refused.value.status, refused.value.field) == (400, "FromUserName")

"""WeChat official-account callbacks: WeChat's server verification, signed and encrypted pushes
published as the OpenID's identify and track, and everything not WeChat's refused with 401
before anything reaches Kafka."""

from __future__ import annotations

import hashlib
import time
import uuid

import httpx
import pytest

from libs.common import topics
from libs.common.bus.reader import header
from libs.common.events import decode
from libs.devstack.stack import Stack
from tests.integration.ingest.support import ADMIN, CreatedSource
from tests.integration.support import read_topic
from tests.wechat import WechatPlatform, new_aes_key, push_xml

pytestmark = pytest.mark.integration


def _app_id() -> str:
    return f"wx{uuid.uuid4().hex[:16]}"


async def _account(
    client: httpx.AsyncClient, source: CreatedSource, *, encrypted: bool = False
) -> WechatPlatform:
    platform = WechatPlatform(
        _app_id(), f"tok{uuid.uuid4().hex[:12]}", new_aes_key() if encrypted else None
    )
    response = await client.put(
        f"/wechat/accounts/{platform.app_id}", json=platform.account(source.id), headers=ADMIN
    )
    assert response.status_code == 200, response.text
    assert response.json()["encrypted"] is encrypted
    return platform


def _ids(app_id: str, openid: str, created: int) -> list[str]:
    """The messageIds ingest gives a push's identify and track (a follow: by sender and time)."""
    key = f"{app_id}|event:{openid}:{created}:subscribe"
    base = "wx-" + hashlib.sha256(key.encode()).hexdigest()[:32]
    return [f"{base}-i", f"{base}-t"]


async def _published(stack: Stack, message_ids: list[str]) -> list[str]:
    """The ce_ids among `message_ids` on ingest.v1, once per record (a copy counts twice)."""
    records = await read_topic(stack.kafka_bootstrap, topics.INGEST)
    return [header(r, "ce_id") for r in records if header(r, "ce_id") in message_ids]


async def test_wechat_server_verification_echoes_echostr_only_when_signed(
    client: httpx.AsyncClient, source: CreatedSource
) -> None:
    platform = await _account(client, source)
    url = f"/wechat/{platform.app_id}/callback"
    signed = await client.get(url, params={**platform.query(), "echostr": "5837397749"})
    assert (signed.status_code, signed.text) == (200, "5837397749")
    forged = {**platform.query(), "signature": "0" * 40, "echostr": "1"}
    refused = await client.get(url, params=forged)
    assert refused.status_code == 401
    assert refused.json()["error"]["field"] == "signature"


async def test_a_signed_follow_becomes_the_openids_identify_and_follow(
    client: httpx.AsyncClient, source: CreatedSource, stack: Stack
) -> None:
    platform = await _account(client, source)
    created = int(time.time())
    xml = push_xml("o6_follower_1", created=created, Event="subscribe", EventKey="qrscene_expo")
    response = await client.post(
        f"/wechat/{platform.app_id}/callback", params=platform.query(), content=xml
    )
    assert (response.status_code, response.text) == (200, "success")
    ids = _ids(platform.app_id, "o6_follower_1", created)
    records = await read_topic(stack.kafka_bootstrap, topics.INGEST)
    calls = {
        header(r, "ce_id"): decode(r.key, r.value, r.headers).data
        for r in records
        if header(r, "ce_id") in ids
    }
    identify, track = calls[ids[0]], calls[ids[1]]
    assert identify.traits == {"wechat_openid": "o6_follower_1", "wechat_subscribed": True}
    assert (track.event, track.properties) == (
        "wechat_follow",
        {"app_id": platform.app_id, "scene": "expo"},
    )
    assert identify.anonymous_id == track.anonymous_id == "o6_follower_1"
    assert identify.source_id == track.source_id == source.id
    assert int(track.timestamp.timestamp()) == created


async def test_an_encrypted_click_is_decrypted_and_published(
    client: httpx.AsyncClient, source: CreatedSource, stack: Stack
) -> None:
    platform = await _account(client, source, encrypted=True)
    xml = push_xml("o6_clicker", Event="CLICK", EventKey="V1001_COUPON")
    query, body = platform.encrypted(xml)
    response = await client.post(f"/wechat/{platform.app_id}/callback", params=query, content=body)
    assert (response.status_code, response.text) == (200, "success"), response.text
    records = await read_topic(stack.kafka_bootstrap, topics.INGEST)
    clicks = [
        decode(r.key, r.value, r.headers).data
        for r in records
        if r.key == b"o6_clicker" and header(r, "ce_type") == "ingest.track"
    ]
    assert [(c.event, c.properties["key"]) for c in clicks] == [
        ("wechat_menu_click", "V1001_COUPON")
    ]


async def test_forged_stale_and_replayed_callbacks_are_refused_and_publish_nothing(
    client: httpx.AsyncClient, source: CreatedSource, stack: Stack
) -> None:
    platform = await _account(client, source, encrypted=True)
    url = f"/wechat/{platform.app_id}/callback"
    now = int(time.time())

    def follow(created: int) -> bytes:
        return push_xml("o6_target", created=created, Event="subscribe")

    forged = {**platform.query(), "signature": "f" * 40}
    stale = platform.query(timestamp=now - 600)
    query, body = platform.encrypted(follow(now - 2))
    tampered = {**query, "msg_signature": "0" * 40}
    refusals = [
        (forged, follow(now - 1), "signature"),
        (stale, follow(now - 600), "timestamp"),
        (tampered, body, "msg_signature"),
    ]
    for params, content, field in refusals:
        response = await client.post(url, params=params, content=content)
        assert response.status_code == 401, response.text
        assert response.json()["error"]["field"] == field
    accepted = platform.query()
    once = await client.post(url, params=accepted, content=follow(now - 3))
    assert once.status_code == 200, once.text
    replayed = await client.post(url, params=accepted, content=follow(now - 3))
    assert replayed.status_code == 401
    assert replayed.json()["error"]["field"] == "nonce"
    refused_ids = [
        i for created in (1, 600, 2) for i in _ids(platform.app_id, "o6_target", now - created)
    ]
    accepted_ids = _ids(platform.app_id, "o6_target", now - 3)
    published = await _published(stack, refused_ids + accepted_ids)
    assert sorted(published) == sorted(accepted_ids)


async def test_an_account_of_an_unknown_source_or_a_malformed_key_is_refused_naming_it(
    client: httpx.AsyncClient, source: CreatedSource
) -> None:
    url = f"/wechat/accounts/{_app_id()}"
    unknown = await client.put(
        url, json={"source_id": "src_nope", "token": "abc123"}, headers=ADMIN
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["field"] == "source_id"
    for body, field in (
        ({"source_id": source.id, "token": "no spaces!"}, "token"),
        (
            {"source_id": source.id, "token": "abc123", "encoding_aes_key": "short"},
            "encoding_aes_key",
        ),
    ):
        response = await client.put(url, json=body, headers=ADMIN)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"].endswith(field)
    missing = await client.post(f"/wechat/{_app_id()}/callback", params={}, content=b"<xml/>")
    assert missing.status_code == 404

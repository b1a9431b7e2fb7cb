"""A WeChat follow, pushed to ingest's callback, becomes behaviour on the follower's profile and
enters a journey that welcomes them with a template message: once signed, once encrypted."""

from __future__ import annotations

import pytest

from tests.integration.closed_loop.harness import ClosedLoop, unique
from tests.integration.support import wait_for
from tests.wechat import WechatPlatform, new_aes_key, push_xml

pytestmark = pytest.mark.integration


async def _welcome_followers_from(loop: ClosedLoop, scene: str) -> None:
    """A `wechat` channel to the fake WeChat, and a journey sending a template message to
    everyone who follows by scanning the QR code of `scene`."""
    await loop.call(
        "dispatch",
        "POST",
        "/channels",
        json={
            "name": "wechat",
            "kind": "wechat",
            "config": {
                "base_url": loop.providers_url,
                "app_id": "wx5a6b7c8d9e0f1a2b",
                "app_secret": "wx-secret",
                "template_id": "WELCOME_TPL",
            },
        },
    )
    segment, template, journey = f"seg_{scene}", f"tpl_{scene}", f"jrn_{scene}"
    conditions = {
        "event": "wechat_follow",
        "where": [{"property": "scene", "op": "eq", "value": scene}],
    }
    await loop.call(
        "segment",
        "POST",
        "/segments",
        json={"id": segment, "name": scene, "conditions": conditions},
    )
    variant = {
        "id": "only",
        "title": "Welcome",
        "data": {"first": {"value": "Welcome to the tea club"}, "keyword1": {"value": scene}},
    }
    await loop.call(
        "content",
        "POST",
        "/templates",
        json={"id": template, "name": scene, "channel": "wechat", "variants": [variant]},
    )
    await loop.call(
        "journey",
        "POST",
        "/journeys",
        json={
            "id": journey,
            "name": scene,
            "entry": {"segment": segment},
            "start": "welcome",
            "nodes": {"welcome": {"type": "send", "channel": "wechat", "template_id": template}},
        },
    )
    await loop.call("journey", "POST", f"/journeys/{journey}/publish")


async def test_a_wechat_follow_enters_a_journey_that_welcomes_the_follower(
    loop: ClosedLoop,
) -> None:
    scene = unique("expo")
    await _welcome_followers_from(loop, scene)
    source = await loop.call("ingest", "POST", "/sources", json={"name": scene})
    signed = WechatPlatform("wx5a6b7c8d9e0f1a2b", "closeloopToken1")
    encrypted = WechatPlatform("wx5a6b7c8d9e0f1a2b", "closeloopToken1", new_aes_key())
    await loop.call(
        "ingest", "PUT", f"/wechat/accounts/{signed.app_id}", json=encrypted.account(source["id"])
    )
    plain_follower, secret_follower = unique("o6_plain"), unique("o6_secret")
    url = f"/wechat/{signed.app_id}/callback"
    plain = push_xml(plain_follower, Event="subscribe", EventKey=f"qrscene_{scene}")
    response = await loop.ingest.post(url, params=signed.query(), content=plain)
    assert (response.status_code, response.text) == (200, "success")
    query, body = encrypted.encrypted(
        push_xml(secret_follower, Event="subscribe", EventKey=f"qrscene_{scene}")
    )
    response = await loop.ingest.post(url, params=query, content=body)
    assert (response.status_code, response.text) == (200, "success")

    async def both_welcomed() -> bool:
        welcomed = {m["touser"] for m in loop.providers.wechat if m["template_id"] == "WELCOME_TPL"}
        return {plain_follower, secret_follower} <= welcomed

    await wait_for(both_welcomed, within=120, what="the followers' welcome messages", every=0.2)
    sent = [m for m in loop.providers.wechat if m["touser"] == plain_follower]
    assert len(sent) == 1
    assert sent[0]["data"]["keyword1"] == {"value": scene}
    profile = await loop.profile_of(f"wechat_openid:{secret_follower}")
    assert profile is not None
    assert profile["traits"]["wechat_subscribed"] is True

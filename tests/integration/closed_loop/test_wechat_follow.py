"""A WeChat follow, pushed to ingest's callback, becomes behaviour on the follower's profile and
enters a journey that welcomes them with a template message: once signed, once encrypted. An
official account and a mini-program configured together each reach the person by their own
OpenID."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.closed_loop.harness import ClosedLoop, unique
from tests.integration.support import wait_for
from tests.wechat import WechatPlatform, new_aes_key, push_xml

pytestmark = pytest.mark.integration


OFFICIAL_ACCOUNT = "wx5a6b7c8d9e0f1a2b"
MINI_PROGRAM = "wx9f8e7d6c5b4a3f2e"


async def _channel(loop: ClosedLoop, name: str, kind: str, config: dict[str, Any]) -> None:
    """A channel to the fake WeChat; the same one another test of the module made is kept."""
    body = {"name": name, "kind": kind, "config": {"base_url": loop.providers_url, **config}}
    response = await loop.dispatch.post("/channels", json=body)
    assert response.status_code in (201, 409), response.text


async def _official_account(loop: ClosedLoop) -> None:
    config = {"app_id": OFFICIAL_ACCOUNT, "app_secret": "wx-secret", "template_id": "WELCOME_TPL"}
    await _channel(loop, "wechat", "wechat", config)


async def _welcome_followers_from(loop: ClosedLoop, scene: str) -> None:
    """A `wechat` channel to the fake WeChat, and a journey sending a template message to
    everyone who follows by scanning the QR code of `scene`."""
    await _official_account(loop)
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
    signed = WechatPlatform(OFFICIAL_ACCOUNT, "closeloopToken1")
    encrypted = WechatPlatform(OFFICIAL_ACCOUNT, "closeloopToken1", new_aes_key())
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


async def test_an_official_account_and_a_mini_program_each_reach_their_own_openid(
    loop: ClosedLoop,
) -> None:
    scene = unique("both")
    await _official_account(loop)
    mini = {"app_id": MINI_PROGRAM, "app_secret": "mini-secret", "template_id": "SHIPPED_TPL"}
    await _channel(loop, "wechat_miniprogram", "wechat_miniprogram", mini)
    segment = f"seg_{scene}"
    conditions = {"trait": "wechat_scene", "value": scene}
    await loop.call(
        "segment",
        "POST",
        "/segments",
        json={"id": segment, "name": scene, "conditions": conditions},
    )
    card = {"id": "only", "title": "Welcome", "data": {"first": {"value": "Hello"}}}
    shipped = {
        "id": "only",
        "url": "pages/order/detail?id={{ profile.traits.last_order }}",
        "data": {"thing1": {"value": "Your spring tea has shipped"}},
    }
    for template, channel, variant in (
        (f"tpl_{scene}_card", "wechat", card),
        (f"tpl_{scene}_shipped", "wechat_miniprogram", shipped),
    ):
        await loop.call(
            "content",
            "POST",
            "/templates",
            json={"id": template, "name": template, "channel": channel, "variants": [variant]},
        )
    journey = f"jrn_{scene}"
    nodes = {
        "card": {
            "type": "send",
            "channel": "wechat",
            "template_id": f"tpl_{scene}_card",
            "next": "shipped",
        },
        "shipped": {
            "type": "send",
            "channel": "wechat_miniprogram",
            "template_id": f"tpl_{scene}_shipped",
        },
    }
    await loop.call(
        "journey",
        "POST",
        "/journeys",
        json={
            "id": journey,
            "name": scene,
            "entry": {"segment": segment},
            "start": "card",
            "nodes": nodes,
        },
    )
    await loop.call("journey", "POST", f"/journeys/{journey}/publish")
    account_openid, mini_openid = unique("o6_acct"), unique("oM_mini")
    traits = {
        "wechat_openid": account_openid,
        "wechat_miniprogram_openid": mini_openid,
        "wechat_scene": scene,
        "last_order": "7",
    }
    await loop.track("identify", userId=unique("u_both"), traits=traits)

    async def both_sent() -> bool:
        return any(m["touser"] == mini_openid for m in loop.providers.subscribe) and any(
            m["touser"] == account_openid for m in loop.providers.wechat
        )

    await wait_for(both_sent, within=120, what="the card and the subscribe message", every=0.2)
    [card_sent] = [m for m in loop.providers.wechat if m["touser"] == account_openid]
    [subscribe] = [m for m in loop.providers.subscribe if m["touser"] == mini_openid]
    assert card_sent["template_id"] == "WELCOME_TPL"
    assert subscribe["template_id"] == "SHIPPED_TPL"
    assert subscribe["page"] == "pages/order/detail?id=7"
    assert subscribe["data"] == {"thing1": {"value": "Your spring tea has shipped"}}
    # Neither OpenID was sent the other kind of message.
    assert not [m for m in loop.providers.wechat if m["touser"] == mini_openid]
    assert not [m for m in loop.providers.subscribe if m["touser"] == account_openid]

"""WeChat and WeCom over the real database and a local server speaking their APIs: one access
token shared by the replicas, mini-program subscribe messages and customer-contact messages
with the providers' own errcodes, and WeCom's members and customers reached in one deployment."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import text

import services.dispatch
from libs.common.db import create_engine, create_sessions, upgrade
from libs.common.events import Event, MessageRendered
from libs.common.profiles import ProfileFacts
from libs.common.settings import Settings
from libs.devstack.pytest_plugin import SettingsFactory
from services.content.messages import Tracking, content_of
from services.dispatch.channels.base import OutgoingMessage
from services.dispatch.channels.config import WechatConfig
from services.dispatch.channels.weixin import WechatChannel
from services.dispatch.tokens import AccessTokens
from tests.events import rendered, unique
from tests.integration.dispatch.conftest import Dispatch
from tests.integration.dispatch.providers import running_providers
from tests.integration.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

_MIGRATIONS = Path(services.dispatch.__file__).parent / "migrations"


@pytest_asyncio.fixture(loop_scope="session")
async def ledger_schema(settings_factory: SettingsFactory) -> AsyncIterator[Settings]:
    """Dispatch's schema, migrated, for replicas that each open their own engine on it."""
    settings = settings_factory(service_name=f"dispatch_tokens_{uuid.uuid4().hex[:8]}")
    await asyncio.to_thread(upgrade, settings, _MIGRATIONS)
    yield settings
    engine = create_engine(settings)
    async with engine.begin() as connection:
        await connection.execute(text(f"DROP SCHEMA {settings.schema_name} CASCADE"))
    await engine.dispose()


def _template_message(openid: str) -> OutgoingMessage:
    return OutgoingMessage(
        message_id=f"msg_{uuid.uuid4().hex[:8]}",
        idempotency_key=uuid.uuid4().hex,
        profile_id="prf_1",
        channel="wechat",
        recipient=openid,
        subject="Your oolong is waiting",
        body="Hello",
    )


async def test_replicas_fetch_one_token_share_it_and_renew_it_once(
    ledger_schema: Settings,
) -> None:
    """Two replicas, each its own engine and HTTP client, send at once: WeChat hands out one
    token. When WeChat then refuses it (42001), one new token serves both. Each fetching its
    own, the second fetch retired the first replica's token and they took turns retiring each
    other's."""
    app_id = "wx1a2b3c4d5e6f7a8b"
    async with running_providers() as (providers, base_url, _):
        config = WechatConfig(base_url=base_url, app_id=app_id, app_secret="s", template_id="T")
        engines = [create_engine(ledger_schema) for _ in range(2)]
        clients = [httpx.AsyncClient(timeout=10) for _ in range(2)]
        replicas = [
            WechatChannel(
                config,
                client,
                AccessTokens(create_sessions(engine), ledger_schema.schema_name, f"replica-{n}"),
            )
            for n, (engine, client) in enumerate(zip(engines, clients, strict=True))
        ]
        try:
            first = await asyncio.gather(
                *(
                    replica.send(_template_message(f"o_reader_{n}_{i}"))
                    for n, replica in enumerate(replicas)
                    for i in range(8)
                )
            )
            assert [result.outcome for result in first] == ["sent"] * 16, first
            assert providers.wechat_tokens[app_id] == 1
            providers.wechat_expire_next = True
            renewed = await asyncio.gather(
                *(
                    replica.send(_template_message(f"o_again_{n}"))
                    for n, replica in enumerate(replicas)
                )
            )
            assert [result.outcome for result in renewed] == ["sent", "sent"], renewed
            assert providers.wechat_tokens[app_id] == 2
            assert len(providers.wechat) == 18
        finally:
            for client in clients:
                await client.aclose()
            for engine in engines:
                await engine.dispose()


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def _outcomes(dispatch: Dispatch, request_id: str) -> list[Any]:
    """The message's outcomes once it has a final one (a retry reports a retryable
    message.failed first, a deferral a message.deferred)."""
    found: list[Any] = []

    async def arrived() -> bool:
        found[:] = await dispatch.harness.outcomes(request_id)
        return any(_is_final(o) for o in found)

    await wait_for(arrived, within=90, what=f"an outcome of {request_id}", every=0.3)
    return found


async def _final(dispatch: Dispatch, request_id: str) -> Any:
    """The message's one final outcome: retryable failures before it, from a provider call
    that a loaded machine let time out and that was then retried, are passed over."""
    outcomes = await _outcomes(dispatch, request_id)
    (final,) = [o for o in outcomes if _is_final(o)]
    return final


def _is_final(outcome: Any) -> bool:
    """Neither a deferral nor a failure that will be retried."""
    if outcome.event_type == "message.deferred":
        return False
    return outcome.event_type != "message.failed" or not outcome.retryable


async def _mini_program(dispatch: Dispatch) -> str:
    name = _name("mini")
    await dispatch.harness.channel(
        name,
        "wechat_miniprogram",
        {
            "base_url": dispatch.base_url,
            "app_id": "wx9f8e7d6c5b4a3f2e",
            "app_secret": "mini-secret",
            "template_id": "SUBSCRIBE_TPL",
            "page": "pages/index/index",
            "miniprogram_state": "trial",
        },
    )
    return name


async def test_a_subscribe_message_speaks_the_mini_program_api(dispatch: Dispatch) -> None:
    name = await _mini_program(dispatch)
    data = {"thing1": {"value": "Oolong 250 g"}, "date2": {"value": "2026-12-08"}}
    message = rendered(
        name, recipient="o_mini_buyer", payload={"data": data, "url": "pages/order/detail?id=7"}
    )
    await dispatch.harness.publish(message)
    sent = await _final(dispatch, message.data.request_id)
    assert sent.event_type == "message.sent"
    body = next(s for s in dispatch.providers.subscribe if s["touser"] == "o_mini_buyer")
    assert body == {
        "touser": "o_mini_buyer",
        "template_id": "SUBSCRIBE_TPL",
        "data": data,
        "page": "pages/order/detail?id=7",
        "miniprogram_state": "trial",
        "lang": "zh_CN",
    }
    assert sent.provider_message_id is not None


async def test_a_user_who_refused_subscribe_messages_is_suppressed_not_retried(
    dispatch: Dispatch,
) -> None:
    """43101: the user refused or cancelled the subscription, a consent suppression."""
    name = await _mini_program(dispatch)
    dispatch.providers.wechat_refusing.add("o_mini_refuser")
    message = rendered(
        name, recipient="o_mini_refuser", payload={"data": {"thing1": {"value": "x"}}}
    )
    await dispatch.harness.publish(message)
    suppressed = await _final(dispatch, message.data.request_id)
    assert suppressed.event_type == "message.suppressed"
    assert suppressed.reason == "consent"
    row = await dispatch.harness.ledger_row(message.data.idempotency_key)
    assert row is not None and row["status"] == "suppressed"


@pytest.mark.parametrize(
    ("recipient", "data", "errcode"),
    [
        ("not-an-openid", {"thing1": {"value": "x"}}, "40003"),
        ("o_mini_buyer_2", {"thing1": {"value": ""}}, "47003"),
    ],
)
async def test_a_wrong_openid_or_template_data_fails_for_good(
    dispatch: Dispatch, recipient: str, data: dict[str, object], errcode: str
) -> None:
    name = await _mini_program(dispatch)
    message = rendered(name, recipient=recipient, payload={"data": data})
    await dispatch.harness.publish(message)
    failed = await _final(dispatch, message.data.request_id)
    assert failed.event_type == "message.failed"
    assert not failed.retryable
    assert failed.error.startswith(f"errcode {errcode}")


async def test_an_api_quota_answer_is_retried_later(dispatch: Dispatch) -> None:
    """45009: the daily quota of calls is spent; the message waits and goes."""
    name = await _mini_program(dispatch)
    message = rendered(
        name, recipient="o_mini_patient", payload={"data": {"thing1": {"value": "x"}}}
    )
    dispatch.providers.wechat_over_quota = 1
    await dispatch.harness.publish(message)
    outcomes = await _outcomes(dispatch, message.data.request_id)
    assert [o.event_type for o in outcomes] == ["message.failed", "message.sent"]
    assert outcomes[0].error.startswith("errcode 45009")


async def test_a_template_message_to_someone_who_unfollowed_is_suppressed(
    dispatch: Dispatch,
) -> None:
    """43004: the user does not follow the official account."""
    name = _name("wechat")
    await dispatch.harness.channel(
        name,
        "wechat",
        {
            "base_url": dispatch.base_url,
            "app_id": "wx0a0b0c0d0e0f0a0b",
            "app_secret": "s",
            "template_id": "T",
        },
    )
    dispatch.providers.wechat_refusing.add("o_unfollowed")
    message = rendered(name, recipient="o_unfollowed")
    await dispatch.harness.publish(message)
    suppressed = await _final(dispatch, message.data.request_id)
    assert (suppressed.event_type, suppressed.reason) == ("message.suppressed", "consent")


async def test_customer_contact_messages_go_through_add_msg_template(dispatch: Dispatch) -> None:
    name = _name("contact")
    await dispatch.harness.channel(
        name,
        "wecom_contact",
        {
            "base_url": dispatch.base_url,
            "corp_id": "ww1234567890abcdef",
            "corp_secret": "contact-secret",
            "sender": "zhangsan",
        },
    )
    dispatch.providers.wecom_strangers.add("wm_stranger")
    customer = rendered(
        name,
        recipient="wm_customer",
        subject="Spring tea is in",
        body="Ten new oolongs",
        payload={"url": "https://shop.example.com/spring"},
    )
    stranger = rendered(name, recipient="wm_stranger")
    not_a_customer = rendered(name, recipient="zhangsan")
    await dispatch.harness.publish(customer, stranger, not_a_customer)
    sent = await _final(dispatch, customer.data.request_id)
    assert sent.event_type == "message.sent"
    body = next(
        b for b in dispatch.providers.wecom_contact if b["external_userid"] == ["wm_customer"]
    )
    assert body["chat_type"] == "single" and body["sender"] == "zhangsan"
    assert body["text"] == {"content": "Spring tea is in\nTen new oolongs"}
    assert body["attachments"][0]["link"]["url"] == "https://shop.example.com/spring"
    suppressed = await _final(dispatch, stranger.data.request_id)
    assert (suppressed.event_type, suppressed.reason) == ("message.suppressed", "consent")
    failed = await _final(dispatch, not_a_customer.data.request_id)
    assert failed.event_type == "message.failed"
    assert failed.error.startswith("errcode 40096")


def _addressed(
    channel: str, person: ProfileFacts, fields: dict[str, Any]
) -> Event[MessageRendered]:
    """A message to `person` as content makes it: addressed by the channel's trait, its
    template's fields composed for the channel, the link tracked."""
    key = f"jrn_test:v1:node_send:{person.profile_id}:{uuid.uuid4().hex[:8]}"
    content = content_of(channel, fields, Tracking("https://t.example.com", "s", key))
    return rendered(
        channel,
        person.profile_id,
        key=key,
        recipient=person.recipient(channel),
        subject=content.subject,
        body=content.body,
        payload=content.payload,
    )


async def test_wecom_members_and_customers_are_each_reached_through_their_own_api(
    dispatch: Dispatch,
) -> None:
    """Application messages to a member by `wecom_userid` and customer-contact messages to a
    customer by `wecom_external_userid`, both configured in one deployment under the loop's
    channel names."""
    corp = {"base_url": dispatch.base_url, "corp_id": "ww1234567890abcdef"}
    application = {**corp, "corp_secret": "wecom-secret", "agent_id": 1000002}
    await dispatch.harness.channel("wecom", "wecom", application)
    customer_contact = {**corp, "corp_secret": "contact-secret", "sender": "zhangsan"}
    await dispatch.harness.channel("wecom_contact", "wecom_contact", customer_contact)
    member = ProfileFacts(unique("prf"), {"wecom_userid": unique("lisi")})
    customer = ProfileFacts(unique("prf"), {"wecom_external_userid": unique("wmAbC")})
    to_member = _addressed("wecom", member, {"title": "Stock count", "description": "Due Friday"})
    shop = "https://shop.example.com/spring"
    to_customer = _addressed(
        "wecom_contact",
        customer,
        {"title": "Spring tea is in", "description": "Ten new oolongs", "url": shop},
    )
    await dispatch.harness.publish(to_member, to_customer)
    for message in (to_member, to_customer):
        sent = await _final(dispatch, message.data.request_id)
        assert sent.event_type == "message.sent", sent
    member_id = member.traits["wecom_userid"]
    customer_id = customer.traits["wecom_external_userid"]
    [application_message] = [m for m in dispatch.providers.wecom if m["touser"] == member_id]
    assert application_message["agentid"] == 1000002
    assert application_message["text"] == {"content": "Due Friday"}
    [task] = [m for m in dispatch.providers.wecom_contact if m["external_userid"] == [customer_id]]
    assert task["sender"] == "zhangsan"
    assert task["text"] == {"content": "Spring tea is in\nTen new oolongs"}
    assert task["attachments"][0]["link"]["url"].startswith("https://t.example.com/c/")
    # Neither id was sent the other kind of message.
    assert not [m for m in dispatch.providers.wecom if m["touser"] == customer_id]
    assert not [m for m in dispatch.providers.wecom_contact if member_id in m["external_userid"]]

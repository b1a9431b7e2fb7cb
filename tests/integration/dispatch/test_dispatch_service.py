"""Dispatch over the real broker and database: every channel, the policies, tracking, receipts."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import pytest

from libs.common import topics
from libs.common.bus.dlq import ERROR, ERROR_TYPE
from libs.common.bus.reader import header
from libs.common.events import Event, MessageRendered
from libs.common.tracking import TrackingToken, sign
from tests.events import erasure, merge, profile_updated, rendered
from tests.integration.dispatch.conftest import Dispatch
from tests.integration.support import read_topic, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def _webhook(dispatch: Dispatch, prefix: str = "hook") -> str:
    name = _name(prefix)
    url = f"{dispatch.base_url}/hook/{name}"
    await dispatch.harness.channel(name, "webhook", {"url": url, "secret": f"secret-{name}"})
    return name


async def _until_outcomes(dispatch: Dispatch, request_id: str, *types: str) -> list[str]:
    async def arrived() -> bool:
        return await dispatch.harness.outcome_types(request_id) == list(types)

    try:
        await wait_for(arrived, within=90, what=f"outcomes {types} of {request_id}", every=0.3)
    except AssertionError as error:
        seen = await dispatch.harness.outcome_types(request_id)
        raise AssertionError(f"{error}; seen {seen}") from None
    return list(types)


async def test_webhook_is_signed_sent_once_and_reported_sent(dispatch: Dispatch) -> None:
    name = await _webhook(dispatch)
    message = rendered(name, payload={"order": "A-1"})
    # The same step rendered twice (content redelivered): same profile and key, another event.
    duplicate = rendered(name, message.data.profile_id, key=message.data.idempotency_key)
    await dispatch.harness.publish(message, duplicate)
    await _until_outcomes(dispatch, message.data.request_id, "message.sent")
    inbox = dispatch.providers.webhook(name)
    assert len(inbox.raw) == 1
    request = inbox.raw[0]
    expected = hmac.new(f"secret-{name}".encode(), request["body"], hashlib.sha256).hexdigest()
    assert request["headers"]["x-closeloop-signature"] == f"sha256={expected}"
    assert request["headers"]["idempotency-key"] == message.data.idempotency_key
    assert request["headers"]["x-closeloop-timestamp"].isdigit()
    body = orjson.loads(request["body"])
    assert body["payload"] == {"order": "A-1"}
    assert body["journey"]["node_id"] == "node_send"
    sent = (await dispatch.harness.outcomes(message.data.request_id))[0]
    assert sent.provider_message_id.startswith("wh_")
    assert await dispatch.harness.outcome_types(duplicate.data.request_id) == []


async def test_email_reaches_the_smtp_server_with_a_message_id_from_the_key(
    dispatch: Dispatch,
) -> None:
    name = _name("mail")
    config = {
        "host": "127.0.0.1",
        "port": dispatch.smtp_port,
        "tls": "none",
        "from_address": "news@shop.example.com",
    }
    await dispatch.harness.channel(name, "email", config)
    message = rendered(name, recipient=f"li.wei.{name}@example.com", body="<p>Hi</p>")
    await dispatch.harness.publish(message)
    await _until_outcomes(dispatch, message.data.request_id, "message.sent")
    mail = next(m for m in dispatch.providers.mail if m["To"] == message.data.recipient)
    assert mail["Subject"] == "Your oolong is waiting"
    digest = hashlib.sha256(message.data.idempotency_key.encode()).hexdigest()[:40]
    assert mail["Message-ID"] == f"<{digest}@shop.example.com>"


async def test_smtp_5xx_fails_permanently_and_lands_on_the_dlq(dispatch: Dispatch) -> None:
    name = _name("mail")
    config = {
        "host": "127.0.0.1",
        "port": dispatch.smtp_port,
        "tls": "none",
        "from_address": "news@shop.example.com",
    }
    await dispatch.harness.channel(name, "email", config)
    message = rendered(name, recipient=f"bounce.{name}@example.com")
    await dispatch.harness.publish(message)
    await _until_outcomes(dispatch, message.data.request_id, "message.failed")
    failed = (await dispatch.harness.outcomes(message.data.request_id))[0]
    assert failed.retryable is False and "550" in failed.error
    # Other tests dead-letter messages that are not JSON at all: look for the id in the bytes.
    request_id = message.data.request_id.encode()
    letters = [
        r
        for r in await read_topic(dispatch.harness.stack.kafka_bootstrap, topics.DLQ)
        if request_id in (r.value or b"")
        and orjson.loads(r.value or b"{}").get("request_id") == message.data.request_id
    ]
    assert len(letters) == 1
    assert header(letters[0], ERROR_TYPE) == "permanent_provider_error"
    assert "550" in (header(letters[0], ERROR) or "")


async def test_transient_errors_are_retried_then_fail_for_good(dispatch: Dispatch) -> None:
    name = await _webhook(dispatch)
    dispatch.providers.webhook(name).status = 503
    message = rendered(name)
    await dispatch.harness.publish(message)
    failed = ["message.failed"] * 3
    await _until_outcomes(dispatch, message.data.request_id, *failed)
    outcomes = await dispatch.harness.outcomes(message.data.request_id)
    assert [o.retryable for o in outcomes] == [True, True, False]
    assert len(dispatch.providers.webhook(name).raw) == 3


async def test_sms_push_wecom_and_wechat_speak_their_providers_shapes(dispatch: Dispatch) -> None:
    base = dispatch.base_url
    sms, push, wecom, wechat = _name("sms"), _name("push"), _name("wecom"), _name("wechat")
    await dispatch.harness.channel(
        sms,
        "sms",
        {"base_url": base, "account_sid": "AC1", "auth_token": "tw", "from_number": "+1555"},
    )
    await dispatch.harness.channel(
        push, "push", {"base_url": base, "project_id": "shop", "access_token": "fcm-token"}
    )
    await dispatch.harness.channel(
        wecom,
        "wecom",
        {"base_url": base, "corp_id": "corp", "corp_secret": "wecom-secret", "agent_id": 7},
    )
    await dispatch.harness.channel(
        wechat,
        "wechat",
        {"base_url": base, "app_id": "wx1", "app_secret": "wx-secret", "template_id": "TPL"},
    )
    dispatch.providers.wechat_expire_next = True  # the first token has expired by the send
    messages = [
        rendered(sms, recipient="+8613800000000", body="Your code"),
        rendered(push, recipient="device-1", payload={"deep_link": "app://p/1"}),
        rendered(wecom, recipient="zhangsan", body="Hello WeCom"),
        rendered(wechat, recipient="openid-1", payload={"data": {"first": {"value": "Hi"}}}),
    ]
    await dispatch.harness.publish(*messages)
    for message in messages:
        await _until_outcomes(dispatch, message.data.request_id, "message.sent")
    texted = next(s for s in dispatch.providers.sms if s["To"] == "+8613800000000")
    assert (texted["From"], texted["Body"]) == ("+1555", "Your code")
    assert texted["auth"].startswith("Basic ")
    pushed = next(p for p in dispatch.providers.push if p["message"]["token"] == "device-1")
    assert pushed["message"]["data"]["deep_link"] == "app://p/1"
    assert any(w["touser"] == "zhangsan" and w["agentid"] == 7 for w in dispatch.providers.wecom)
    assert any(w["touser"] == "openid-1" for w in dispatch.providers.wechat)
    assert dispatch.providers.wechat_tokens_issued >= 2  # refreshed after errcode 42001
    sent = (await dispatch.harness.outcomes(messages[0].data.request_id))[0]
    assert sent.provider_message_id == texted["sid"]


async def test_frequency_cap_suppresses_the_message_past_the_cap(dispatch: Dispatch) -> None:
    name = await _webhook(dispatch, "capped")
    response = await dispatch.harness.http.put(
        "/policies", json={"caps": [{"channel": name, "max": 2, "window": "P1D"}]}
    )
    assert response.status_code == 200, response.text
    profile = f"prf_{uuid.uuid4().hex[:10]}"
    messages = [rendered(name, profile) for _ in range(3)]
    for message in messages:  # one at a time, so which one is over the cap is known
        await dispatch.harness.publish(message)
        await _until_any_outcome(dispatch, message.data.request_id)
    assert await dispatch.harness.outcome_types(messages[2].data.request_id) == [
        "message.suppressed"
    ]
    suppressed = (await dispatch.harness.outcomes(messages[2].data.request_id))[0]
    assert suppressed.reason == "frequency_cap"
    assert len(dispatch.providers.webhook(name).by_key) == 2


async def _until_any_outcome(dispatch: Dispatch, request_id: str) -> None:
    async def arrived() -> bool:
        return bool(await dispatch.harness.outcome_types(request_id))

    await wait_for(arrived, within=90, what=f"an outcome of {request_id}", every=0.3)


async def test_quiet_hours_defer_the_message_until_they_end_in_the_zone_it_names(
    dispatch: Dispatch,
) -> None:
    """The zone comes with the message: dispatch has never been sent a profile event."""
    name = await _webhook(dispatch, "quiet")
    profile = f"prf_{uuid.uuid4().hex[:10]}"
    message = rendered(name, profile, time_zone="Asia/Tokyo")
    await _deferred_until_quiet_hours_end(dispatch, name, message, ZoneInfo("Asia/Tokyo"))
    row = await dispatch.harness.ledger_row(message.data.idempotency_key)
    assert row is not None and row["time_zone"] == "Asia/Tokyo"


async def test_each_message_keeps_quiet_hours_in_its_own_zone(dispatch: Dispatch) -> None:
    """A person's first message named Tokyo, the next New York (they moved): the next one is
    judged in New York's clock, not in a zone remembered from the first."""
    first_channel = await _webhook(dispatch, "zone_first")
    name = await _webhook(dispatch, "zone_moved")
    profile = f"prf_{uuid.uuid4().hex[:10]}"
    first = rendered(first_channel, profile, time_zone="Asia/Tokyo")
    await dispatch.harness.publish(first)

    async def in_ledger() -> bool:
        return await dispatch.harness.ledger_row(first.data.idempotency_key) is not None

    await wait_for(in_ledger, within=60, what="the first message in the ledger")
    message = rendered(name, profile, time_zone="America/New_York")
    await _deferred_until_quiet_hours_end(dispatch, name, message, ZoneInfo("America/New_York"))


async def test_dispatch_skips_profile_updates_and_a_message_naming_no_zone_keeps_utc(
    dispatch: Dispatch,
) -> None:
    """A `profile.updated` setting the zone is passed over unread: quiet hours in the zone it
    named do not hold back a message that names none (UTC)."""
    name = await _webhook(dispatch, "quiet_utc")
    profile, merged = f"prf_{uuid.uuid4().hex[:10]}", f"prf_{uuid.uuid4().hex[:10]}"
    updates_before = await dispatch.harness.consumed("profile.updated")
    merges_before = await dispatch.harness.consumed("profile.merged")
    # One key, one partition: the merge is handled after the update before it.
    await dispatch.harness.publish(
        profile_updated(profile, traits={"timezone": "Asia/Tokyo"}), merge(profile, merged)
    )

    async def merge_handled() -> bool:
        return await dispatch.harness.consumed("profile.merged") > merges_before

    await wait_for(merge_handled, within=60, what="the merge handled")
    assert await dispatch.harness.consumed("profile.updated") == updates_before == 0
    message = rendered(name, profile)
    end = await _quiet_hours(dispatch, name, ZoneInfo("Asia/Tokyo"), timedelta(minutes=10))
    try:
        await dispatch.harness.publish(message)
        await wait_for(
            lambda: _sent(dispatch, message.data.request_id), within=90, what="the message sent"
        )
    finally:
        await dispatch.harness.http.put("/policies", json={})
    outcomes = await dispatch.harness.outcomes(message.data.request_id)
    sent = next(data for data in outcomes if data.event_type == "message.sent")
    assert sent.occurred_at < end  # not held back by Tokyo's quiet hours


async def test_a_merge_moves_a_pending_send_and_preferences_and_an_erasure_fails_it(
    dispatch: Dispatch,
) -> None:
    name = await _webhook(dispatch, "erased")
    merged, survivor = f"prf_{uuid.uuid4().hex[:10]}", f"prf_{uuid.uuid4().hex[:10]}"
    response = await dispatch.harness.http.put(
        f"/preferences/{merged}", json={"consent": {"sms": False}}
    )
    assert response.status_code == 200, response.text
    message = rendered(name, merged, time_zone="Europe/Paris")
    key = message.data.idempotency_key
    # Held back by quiet hours for long enough to be pending when the erasure comes.
    await _quiet_hours(dispatch, name, ZoneInfo("Europe/Paris"), timedelta(minutes=10))
    try:
        await dispatch.harness.publish(message)

        async def in_ledger() -> bool:
            return await dispatch.harness.ledger_row(key) is not None

        await wait_for(in_ledger, within=60, what="the message in the ledger")
        await dispatch.harness.publish(merge(survivor, merged))

        async def moved() -> bool:
            row = await dispatch.harness.ledger_row(key)
            return row is not None and row["profile_id"] == survivor

        await wait_for(moved, within=60, what="the ledger row moved to the survivor")
        preferences = (await dispatch.harness.http.get(f"/preferences/{survivor}")).json()
        assert preferences["consent"] == {"sms": False}
        left = (await dispatch.harness.http.get(f"/preferences/{merged}")).json()
        assert left["consent"] == {}
        await dispatch.harness.publish(erasure(survivor))

        async def deferred_then_failed() -> bool:
            # Two keys, two partitions: the deferral (the merged profile's) and the failure
            # (the survivor's) may be read in either order.
            types = await dispatch.harness.outcome_types(message.data.request_id)
            return sorted(types) == ["message.deferred", "message.failed"]

        await wait_for(deferred_then_failed, within=90, what="the deferral and the failure")
    finally:
        await dispatch.harness.http.put("/policies", json={})
    outcomes = await dispatch.harness.outcomes(message.data.request_id)
    [failed] = [data for data in outcomes if data.event_type == "message.failed"]
    assert failed.retryable is False and failed.profile_id == survivor
    row = await dispatch.harness.ledger_row(key)
    assert row is not None and row["status"] == "failed"
    assert (row["body"], row["time_zone"]) == (None, None)  # the content and zone forgotten


async def _quiet_hours(
    dispatch: Dispatch, channel: str, zone: ZoneInfo, lasting: timedelta
) -> datetime:
    """Quiet hours on the channel from a minute ago to `lasting` from now, in `zone`'s clock:
    when they end."""
    local = datetime.now(UTC).astimezone(zone)
    start, end = local - timedelta(minutes=1), local + lasting
    response = await dispatch.harness.http.put(
        "/policies",
        json={
            "quiet_hours": {
                "start": start.strftime("%H:%M:%S"),
                "end": end.strftime("%H:%M:%S"),
                "channels": [channel],
            }
        },
    )
    assert response.status_code == 200, response.text
    return end


async def _deferred_until_quiet_hours_end(
    dispatch: Dispatch, channel: str, message: Event[MessageRendered], zone: ZoneInfo
) -> None:
    """Quiet hours on the channel from a minute ago to 6 s from now, in `zone`'s clock; the
    message must be sent, and not before they end."""
    end = await _quiet_hours(dispatch, channel, zone, timedelta(seconds=6))
    try:
        await dispatch.harness.publish(message)
        # On a loaded machine the receiver can miss the provider timeout once (a retryable
        # `message.failed`, then the send): what matters here is when the send happened.
        await wait_for(
            lambda: _sent(dispatch, message.data.request_id),
            within=90,
            what="the deferred message sent",
        )
    finally:
        await dispatch.harness.http.put("/policies", json={})
    outcomes = await dispatch.harness.outcomes(message.data.request_id)
    sent = next(data for data in outcomes if data.event_type == "message.sent")
    assert sent.occurred_at >= end.replace(microsecond=0)  # not before the quiet hours ended
    # Said at once, and before the send: put off by quiet hours, until they end.
    [deferred] = [data for data in outcomes if data.event_type == "message.deferred"]
    assert outcomes.index(deferred) < outcomes.index(sent)
    assert (deferred.reason, deferred.until) == ("quiet_hours", end.replace(microsecond=0))
    assert deferred.won_by is None


async def _sent(dispatch: Dispatch, request_id: str) -> bool:
    return "message.sent" in await dispatch.harness.outcome_types(request_id)


async def test_unsubscribe_link_suppresses_later_sends_and_emits_once(dispatch: Dispatch) -> None:
    name = await _webhook(dispatch, "unsub")
    profile = f"prf_{uuid.uuid4().hex[:10]}"
    first = rendered(name, profile)
    await dispatch.harness.publish(first)
    await _until_outcomes(dispatch, first.data.request_id, "message.sent")
    secret = dispatch.harness.stack.tracking_secret
    token = sign(TrackingToken(first.data.idempotency_key, "unsubscribe"), secret)
    asked = await dispatch.harness.public.get(f"/u/{token}")
    assert asked.status_code == 200 and '<form method="post">' in asked.text
    untouched = (await dispatch.harness.http.get(f"/preferences/{profile}")).json()
    assert untouched["unsubscribed"] == []  # a GET (a mail scanner) unsubscribes nobody
    page = await dispatch.harness.public.post(f"/u/{token}")
    assert page.status_code == 200 and "You are unsubscribed" in page.text
    again = await dispatch.harness.public.post(f"/u/{token}")
    assert again.status_code == 200
    await _until_outcomes(dispatch, first.data.request_id, "message.sent", "message.unsubscribed")
    preferences = (await dispatch.harness.http.get(f"/preferences/{profile}")).json()
    assert preferences["unsubscribed"] == [name]
    later = rendered(name, profile)
    await dispatch.harness.publish(later)
    await _until_outcomes(dispatch, later.data.request_id, "message.suppressed")
    assert (await dispatch.harness.outcomes(later.data.request_id))[0].reason == "unsubscribed"


async def test_consent_withdrawn_suppresses(dispatch: Dispatch) -> None:
    name = await _webhook(dispatch, "consent")
    profile = f"prf_{uuid.uuid4().hex[:10]}"
    response = await dispatch.harness.http.put(
        f"/preferences/{profile}", json={"consent": {name: False}}
    )
    assert response.status_code == 200, response.text
    message = rendered(name, profile)
    await dispatch.harness.publish(message)
    await _until_outcomes(dispatch, message.data.request_id, "message.suppressed")
    assert (await dispatch.harness.outcomes(message.data.request_id))[0].reason == "consent"


async def test_click_redirects_to_the_signed_url_and_tampering_is_refused(
    dispatch: Dispatch,
) -> None:
    name = await _webhook(dispatch, "click")
    message = rendered(name)
    await dispatch.harness.publish(message)
    await _until_outcomes(dispatch, message.data.request_id, "message.sent")
    secret = dispatch.harness.stack.tracking_secret
    url = "https://shop.example.com/p/tea?utm_campaign=winback"
    token = sign(TrackingToken(message.data.idempotency_key, "click", url), secret)
    clicked = await dispatch.harness.public.get(f"/c/{token}")
    assert clicked.status_code == 302
    assert clicked.headers["location"] == url
    forged = sign(TrackingToken(message.data.idempotency_key, "click", "https://evil.example"), "x")
    body, signature = token.split(".")
    for bad in (forged, f"{body}x.{signature}", f"{body}.{signature[:-2]}AA", "garbage"):
        refused = await dispatch.harness.public.get(f"/c/{bad}")
        assert refused.status_code == 404, bad
        assert "location" not in refused.headers
        assert refused.json()["error"]["code"] == "invalid_token"
    opened = await dispatch.harness.public.get(
        f"/o/{sign(TrackingToken(message.data.idempotency_key, 'open'), secret)}"
    )
    assert opened.status_code == 200 and opened.headers["content-type"] == "image/gif"
    assert opened.content.startswith(b"GIF89a")
    await _until_outcomes(
        dispatch, message.data.request_id, "message.sent", "message.clicked", "message.opened"
    )
    click = (await dispatch.harness.outcomes(message.data.request_id))[1]
    assert str(click.url) == url and click.journey.journey_id == "jrn_test"


async def test_receipts_turn_into_delivered_and_failed(dispatch: Dispatch) -> None:
    sms = _name("sms")
    await dispatch.harness.channel(
        sms,
        "sms",
        {
            "base_url": dispatch.base_url,
            "account_sid": "AC1",
            "auth_token": "tw",
            "from_number": "+1555",
        },
    )
    ok, bad = rendered(sms, recipient="+86100"), rendered(sms, recipient="+86200")
    await dispatch.harness.publish(ok, bad)
    for message in (ok, bad):
        await _until_outcomes(dispatch, message.data.request_id, "message.sent")
    sids = {s["To"]: s["sid"] for s in dispatch.providers.sms}
    twilio = {"MessageSid": sids["+86100"], "MessageStatus": "delivered"}
    assert (await dispatch.harness.public.post(f"/receipts/{sms}", data=twilio)).json() == {
        "status": "delivered"
    }
    repeated = await dispatch.harness.public.post(f"/receipts/{sms}", data=twilio)
    assert repeated.json() == {"status": "duplicate"}
    generic = {"provider_message_id": sids["+86200"], "status": "undelivered", "error": "30003"}
    assert (await dispatch.harness.public.post(f"/receipts/{sms}", json=generic)).json() == {
        "status": "failed"
    }
    unknown = await dispatch.harness.public.post(
        f"/receipts/{sms}", json={"provider_message_id": "SMnope", "status": "delivered"}
    )
    assert unknown.status_code == 404
    await _until_outcomes(dispatch, ok.data.request_id, "message.sent", "message.delivered")
    await _until_outcomes(dispatch, bad.data.request_id, "message.sent", "message.failed")


async def test_webhook_to_a_private_address_is_refused_without_the_allow_list(
    dispatch: Dispatch,
) -> None:
    refused = await dispatch.harness.http.post(
        "/channels",
        json={
            "name": _name("internal"),
            "kind": "webhook",
            "config": {"url": "http://169.254.169.254/latest/meta-data", "secret": "s"},
        },
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "webhook_address_refused"
    assert refused.json()["error"]["field"] == "config.url"


async def test_channel_secrets_are_never_returned(dispatch: Dispatch) -> None:
    name = await _webhook(dispatch, "secret")
    shown = (await dispatch.harness.http.get(f"/channels/{name}")).json()
    assert shown["secrets_set"] == ["secret"]
    assert "secret" not in shown["config"]
    replaced = await dispatch.harness.http.put(
        f"/channels/{name}",
        json={"kind": "webhook", "config": {"url": f"{dispatch.base_url}/hook/{name}"}},
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["secrets_set"] == ["secret"]
    listed = (await dispatch.harness.http.get("/channels")).text
    assert f"secret-{name}" not in listed


async def test_a_persons_messages_are_read_newest_first_with_where_each_stands(
    dispatch: Dispatch,
) -> None:
    name = await _webhook(dispatch, "history")
    profile = f"prf_{uuid.uuid4().hex[:10]}"
    first, second = rendered(name, profile), rendered(name, profile, body="second")
    for message in (first, second):  # one at a time, so the order is known
        await dispatch.harness.publish(message)
        await _until_outcomes(dispatch, message.data.request_id, "message.sent")
    await dispatch.harness.publish(rendered(name, f"prf_{uuid.uuid4().hex[:10]}"))
    first_id, second_id = [
        (await dispatch.harness.outcomes(m.data.request_id))[0].message_id for m in (first, second)
    ]

    response = await dispatch.harness.http.get(f"/profiles/{profile}/messages")
    assert response.status_code == 200, response.text
    messages = response.json()["messages"]
    assert [m["message_id"] for m in messages] == [second_id, first_id]
    assert {m["status"] for m in messages} == {"sent"}
    assert messages[0]["subject"] == "Your oolong is waiting"
    assert messages[0]["channel"] == name
    assert messages[0]["journey"]["node_id"] == "node_send"
    assert messages[0]["sent_at"] is not None
    one = await dispatch.harness.http.get(f"/profiles/{profile}/messages?limit=1")
    assert [m["message_id"] for m in one.json()["messages"]] == [second_id]
    refused = await dispatch.harness.http.get(f"/profiles/{profile}/messages?limit=0")
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "query.limit"

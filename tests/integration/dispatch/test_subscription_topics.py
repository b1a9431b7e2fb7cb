"""Subscription topics over the real broker and database: dispatch and journey processes and a
local SMTP server. Email of a topic carries RFC 8058's one-click unsubscribe, which stops that
topic only; the link itself asks first and only its form's POST unsubscribes; consent the traits
state stops email; the preference page changes a topic; a send naming a topic that does not
exist is refused by journey."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio

from libs.common.consent import consent_from_traits
from libs.common.events import ContactRule, Event, MessageRendered
from libs.devstack import free_port
from libs.devstack.pytest_plugin import ServiceLauncher
from libs.devstack.stack import Stack
from services.dispatch.subscriptions import sign_preference_link
from tests.events import rendered
from tests.integration.dispatch.conftest import ALLOW_LOOPBACK, FAST, warm_up
from tests.integration.dispatch.harness import DispatchHarness
from tests.integration.dispatch.providers import Providers, running_providers
from tests.integration.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

MAILBOX = "unsubscribe@shop.example.com"


@dataclass
class Topics:
    dispatch: DispatchHarness
    providers: Providers
    journey: httpx.AsyncClient
    email: str  # the email channel, with the unsubscribe mailbox
    newsletter: str
    promotions: str


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def topics(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Topics]:
    """Dispatch (its tracking links pointing at itself) and journey (checking topics against
    it), an email channel and two topics of this run."""
    launcher = ServiceLauncher(stack, tmp_path_factory.mktemp("topics-logs"))
    run = uuid.uuid4().hex[:8]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with running_providers() as (providers, base_url, smtp_port):
        try:
            # Started together: journey is given dispatch's address before dispatch listens.
            async with asyncio.TaskGroup() as starting:
                dispatch = starting.create_task(
                    launcher(
                        "services.dispatch",
                        name=f"dispatch_{run}",
                        port=port,
                        migrate=True,
                        env={**ALLOW_LOOPBACK, **FAST, "CLOSELOOP_TRACKING_BASE_URL": url},
                        ready_timeout=60,
                    )
                )
                journey = starting.create_task(
                    launcher(
                        "services.journey",
                        name=f"journey_{run}",
                        migrate=True,
                        env={
                            "CLOSELOOP_JOURNEY_CONTENT_URL": "",
                            "CLOSELOOP_JOURNEY_SEGMENT_URL": "",
                            "CLOSELOOP_JOURNEY_DISPATCH_URL": url,
                        },
                        ready_timeout=60,
                    )
                )
            process = dispatch.result()
            harness = DispatchHarness(stack, process)
            await warm_up(harness, providers, base_url, run)
            topics = await _defined(harness, run, smtp_port)
            async with httpx.AsyncClient(
                base_url=journey.result().url,
                headers={"Authorization": f"Bearer {stack.admin_token}"},
                timeout=30.0,
            ) as journey_client:
                yield Topics(harness, providers, journey_client, *topics)
            await harness.aclose()
        finally:
            await launcher.stop_all()


async def _defined(harness: DispatchHarness, run: str, smtp_port: int) -> tuple[str, str, str]:
    email = f"mail_{run}"
    config = {
        "host": "127.0.0.1",
        "port": smtp_port,
        "tls": "none",
        "from_address": "news@shop.example.com",
        "unsubscribe_mailto": MAILBOX,
    }
    await harness.channel(email, "email", config)
    newsletter, promotions = f"newsletter_{run}", f"promotions_{run}"
    for topic, name in ((newsletter, "Newsletter"), (promotions, "Promotions <& offers>")):
        created = await harness.http.post(
            "/topics", json={"topic_id": topic, "name": name, "channels": [email, "sms"]}
        )
        assert created.status_code == 201, created.text
    return email, newsletter, promotions


def _person() -> tuple[str, str]:
    run = uuid.uuid4().hex[:10]
    return f"prf_{run}", f"mei.{run}@example.org"


async def _outcome(topics: Topics, message: Event[MessageRendered], kind: str) -> Any:
    request_id = message.data.request_id

    async def arrived() -> bool:
        return kind in await topics.dispatch.outcome_types(request_id)

    await wait_for(arrived, within=60, what=f"{kind} of {request_id}", every=0.2)
    return next(
        data for data in await topics.dispatch.outcomes(request_id) if data.event_type == kind
    )


def _mail_to(topics: Topics, address: str) -> list[Message]:
    return [mail for mail in topics.providers.mail if mail["To"] == address]


async def _send(topics: Topics, profile: str, address: str, topic: str | None, **extra: Any) -> Any:
    message = rendered(topics.email, profile, recipient=address, subscription_topic=topic, **extra)
    await topics.dispatch.publish(message)
    return message


async def test_topic_email_carries_both_headers_and_the_one_click_post_stops_that_topic_only(
    topics: Topics,
) -> None:
    profile, address = _person()
    newsletter = await _send(topics, profile, address, topics.newsletter)
    receipt = await _send(topics, profile, address, None, subject="Your order")
    await _outcome(topics, newsletter, "message.sent")
    await _outcome(topics, receipt, "message.sent")
    [news_mail] = [m for m in _mail_to(topics, address) if m["Subject"] != "Your order"]
    [receipt_mail] = [m for m in _mail_to(topics, address) if m["Subject"] == "Your order"]
    header = str(news_mail["List-Unsubscribe"])
    url, mailto = (part.strip(" <>") for part in header.split(","))
    assert url.startswith(f"{topics.dispatch.process.url}/u/")
    assert mailto.startswith(f"mailto:{MAILBOX}?subject=unsubscribe%20")
    assert news_mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # A message of no topic (a receipt, a password reset) offers no unsubscribe.
    assert receipt_mail["List-Unsubscribe"] is None
    assert receipt_mail["List-Unsubscribe-Post"] is None

    clicked = await topics.dispatch.public.post(
        urlsplit(url).path,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert clicked.status_code == 200, clicked.text
    unsubscribed = await _outcome(topics, newsletter, "message.unsubscribed")
    assert unsubscribed.subscription_topic == topics.newsletter

    next_newsletter = await _send(topics, profile, address, topics.newsletter)
    next_promotions = await _send(topics, profile, address, topics.promotions)
    suppressed = await _outcome(topics, next_newsletter, "message.suppressed")
    assert (suppressed.reason, suppressed.subscription_topic) == (
        "unsubscribed",
        topics.newsletter,
    )
    await _outcome(topics, next_promotions, "message.sent")
    assert len(_mail_to(topics, address)) == 3  # the two first, then the promotions only
    preferences = (await topics.dispatch.http.get(f"/preferences/{profile}")).json()
    assert preferences["topics"] == {topics.newsletter: {topics.email: False}}
    assert preferences["unsubscribed"] == []  # the channel itself still sends


async def test_the_link_asks_first_and_its_form_unsubscribes_from_that_topic_only(
    topics: Topics,
) -> None:
    profile, address = _person()
    promotions = await _send(topics, profile, address, topics.promotions)
    await _outcome(topics, promotions, "message.sent")
    [mail] = _mail_to(topics, address)
    path = urlsplit(str(mail["List-Unsubscribe"]).split(",")[0].strip(" <>")).path

    asked = await topics.dispatch.public.get(path)
    assert asked.status_code == 200, asked.text
    assert f"Promotions &lt;&amp; offers&gt; messages by {topics.email}" in asked.text
    assert '<form method="post">' in asked.text
    assert f'<a href="{topics.dispatch.process.url}/p/' in asked.text
    assert "frame-ancestors 'none'" in asked.headers["content-security-policy"]
    # The GET (a mail scanner following every link) changed nothing.
    untouched = (await topics.dispatch.http.get(f"/preferences/{profile}")).json()
    assert (untouched["topics"], untouched["unsubscribed"]) == ({}, [])

    done = await topics.dispatch.public.post(path)  # the page's form: no body
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    unsubscribed = await _outcome(topics, promotions, "message.unsubscribed")
    assert unsubscribed.subscription_topic == topics.promotions
    preferences = (await topics.dispatch.http.get(f"/preferences/{profile}")).json()
    assert preferences["topics"] == {topics.promotions: {topics.email: False}}
    assert preferences["unsubscribed"] == []


async def test_consent_the_traits_state_stops_email(topics: Topics) -> None:
    profile, address = _person()
    # What content passes on for a person whose source system says no (libs/common/consent.py).
    no_email = consent_from_traits({f"{topics.email}_opt_in": False})
    no_newsletter = consent_from_traits({"subscriptions": {topics.newsletter: False}})
    withdrawn = await _send(topics, profile, address, topics.promotions, consent=no_email)
    not_news = await _send(topics, profile, address, topics.newsletter, consent=no_newsletter)
    promotions = await _send(topics, profile, address, topics.promotions, consent=no_newsletter)
    assert (await _outcome(topics, withdrawn, "message.suppressed")).reason == "consent"
    news = await _outcome(topics, not_news, "message.suppressed")
    assert (news.reason, news.subscription_topic) == ("unsubscribed", topics.newsletter)
    await _outcome(topics, promotions, "message.sent")
    assert len(_mail_to(topics, address)) == 1


async def test_a_transactional_email_of_a_topic_refused_goes_without_unsubscribe_headers(
    topics: Topics,
) -> None:
    profile, address = _person()
    no_newsletter = consent_from_traits({"subscriptions": {topics.newsletter: False}})
    transactional = ContactRule(transactional=True)
    reset = await _send(
        topics,
        profile,
        address,
        topics.newsletter,
        consent=no_newsletter,
        contact=transactional,
        subject="Reset your password",
    )
    marketing = await _send(topics, profile, address, topics.newsletter, consent=no_newsletter)
    await _outcome(topics, reset, "message.sent")
    assert (await _outcome(topics, marketing, "message.suppressed")).reason == "unsubscribed"
    [reset_mail] = _mail_to(topics, address)
    assert reset_mail["Subject"] == "Reset your password"
    # Only a marketing email (of a topic, not transactional) offers an unsubscribe.
    assert reset_mail["List-Unsubscribe"] is None
    assert reset_mail["List-Unsubscribe-Post"] is None


async def test_the_preference_page_changes_a_topic(topics: Topics) -> None:
    profile, address = _person()
    link = await topics.dispatch.http.post(f"/preferences/{profile}/link")
    assert link.status_code == 200, link.text
    page_path = urlsplit(link.json()["url"]).path
    page = await topics.dispatch.public.get(page_path)
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "Promotions &lt;&amp; offers&gt;" in page.text  # the name, escaped
    newsletter_box = f'name="{topics.newsletter}:{topics.email}"'
    assert f'{newsletter_box} aria-label="Newsletter by {topics.email}" checked>' in page.text

    # Every box ticked but the newsletter by email: it is the one answer that changes.
    shown = [topics.newsletter, topics.promotions]
    ticked = [
        f"{topics.newsletter}:sms",
        f"{topics.promotions}:{topics.email}",
        f"{topics.promotions}:sms",
    ]
    form = {"shown": ",".join(shown), **{box: "on" for box in ticked}}
    saved = await topics.dispatch.public.post(page_path, data=form)
    assert saved.status_code == 200 and "Your choices are saved" in saved.text
    assert f'{newsletter_box} aria-label="Newsletter by {topics.email}">' in saved.text
    preferences = (await topics.dispatch.http.get(f"/preferences/{profile}")).json()
    assert preferences["topics"] == {
        topics.newsletter: {topics.email: False, "sms": True},
        topics.promotions: {topics.email: True, "sms": True},
    }

    newsletter = await _send(topics, profile, address, topics.newsletter)
    promotions = await _send(topics, profile, address, topics.promotions)
    suppressed = await _outcome(topics, newsletter, "message.suppressed")
    assert suppressed.subscription_topic == topics.newsletter
    await _outcome(topics, promotions, "message.sent")


async def test_bad_links_and_unknown_topics_change_nothing(topics: Topics) -> None:
    profile, _ = _person()
    link = await topics.dispatch.http.post(f"/preferences/{profile}/link")
    body, signature = urlsplit(link.json()["url"]).path.removeprefix("/p/").split(".")
    other = await topics.dispatch.http.post(f"/preferences/prf_{uuid.uuid4().hex}/link")
    other_body = urlsplit(other.json()["url"]).path.removeprefix("/p/").split(".")[0]
    form = {"shown": topics.newsletter}  # would unsubscribe from every channel of it
    for forged in (f"{other_body}.{signature}", f"{body}.{signature[:-2]}AA", "garbage"):
        refused = await topics.dispatch.public.post(f"/p/{forged}", data=form)
        assert refused.status_code == 403, forged
        assert refused.json()["error"]["code"] == "invalid_link"
    unknown_box = await topics.dispatch.public.post(
        f"/p/{body}.{signature}", data={**form, "nosuch:email": "on"}
    )
    assert unknown_box.status_code == 422
    assert unknown_box.json()["error"]["field"] == "nosuch:email"
    secret = topics.dispatch.stack.tracking_secret
    past = datetime.now(UTC) - timedelta(seconds=1)
    expired = await topics.dispatch.public.post(
        f"/p/{sign_preference_link(profile, past, secret)}", data=form
    )
    assert expired.status_code == 403
    assert expired.json()["error"]["code"] == "link_expired"
    assert (await topics.dispatch.http.get(f"/preferences/{profile}")).json()["topics"] == {}

    unknown = await topics.dispatch.http.put(
        f"/preferences/{profile}", json={"topics": {"no_such_topic": {topics.email: False}}}
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["field"] == "topics.no_such_topic"
    taken = await topics.dispatch.http.post(
        "/topics", json={"topic_id": topics.newsletter, "name": "Again", "channels": ["sms"]}
    )
    assert taken.status_code == 409


async def test_journey_refuses_a_send_or_broadcast_naming_an_unknown_topic(
    topics: Topics,
) -> None:
    run = uuid.uuid4().hex[:8]
    send: dict[str, Any] = {"type": "send", "channel": topics.email, "template_id": "tpl_news"}
    definition: dict[str, Any] = {
        "name": "news",
        "entry": {"event": "signed_up"},
        "start": "news",
        "nodes": {"news": {**send, "topic": f"nosuch_{run}"}},
    }
    refused = await topics.journey.post("/journeys", json={"id": f"jrn_{run}", **definition})
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["field"] == "nodes.news.topic"
    definition["nodes"]["news"]["topic"] = topics.newsletter
    accepted = await topics.journey.post("/journeys", json={"id": f"jrn_{run}", **definition})
    assert accepted.status_code == 201, accepted.text

    broadcast: dict[str, Any] = {
        "name": "news",
        "segment": "seg_vip",
        "channel": topics.email,
        "template_id": "tpl_news",
        "topic": f"nosuch_{run}",
    }
    refused = await topics.journey.post("/broadcasts", json=broadcast)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["field"] == "body.topic"

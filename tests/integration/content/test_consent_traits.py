"""A message's subscription topic (the send's, else the template's) and the consent its
profile's traits state reach dispatch on the rendered message (decision 0026): content maps
the traits, dispatch keeps no profile."""

from __future__ import annotations

import uuid

import pytest

from libs.common.events import CarriedConsent
from tests.events import facts, requested
from tests.integration.content.harness import ContentHarness, email_template
from tests.integration.support import wait_for

pytestmark = pytest.mark.integration


async def test_the_topic_and_the_consent_traits_travel_with_the_message(
    content_service: ContentHarness,
) -> None:
    run = uuid.uuid4().hex[:10]
    template = f"tpl_news_{run}"
    created = await content_service.create(email_template(template))
    assert created.status_code == 201, created.text
    withdrawn = facts(
        email=f"mei.{run}@example.org",
        email_opt_in=False,
        subscriptions={"newsletter": False, "promotions": {"sms": False}},
    )
    of_a_topic = requested(
        f"prf_{run}_a", template, profile=withdrawn, subscription_topic="newsletter"
    )
    plain = requested(f"prf_{run}_b", template, profile=facts(email=f"li.{run}@example.org"))
    await content_service.publish(of_a_topic, plain)
    ids = {of_a_topic.data.request_id, plain.data.request_id}

    async def rendered() -> bool:
        return len(await content_service.rendered_for(ids)) == 2

    await wait_for(rendered, within=60, what="both requests rendered")
    messages = await content_service.rendered_for(ids)
    message = messages[of_a_topic.data.request_id]
    assert message.subscription_topic == "newsletter"
    assert message.consent == CarriedConsent(
        channels={"email": False},
        subscriptions={"newsletter": {"*": False}, "promotions": {"sms": False}},
    )
    other = messages[plain.data.request_id]
    assert other.subscription_topic is None and other.consent is None


async def test_a_template_of_a_topic_gives_it_to_sends_that_name_none(
    content_service: ContentHarness,
) -> None:
    run = uuid.uuid4().hex[:10]
    template = f"tpl_offers_{run}"
    created = await content_service.create(email_template(template, topic="promotions"))
    assert created.status_code == 201, created.text
    assert created.json()["topic"] == "promotions"
    carried = facts(email=f"mei.{run}@example.org")
    of_the_template = requested(f"prf_{run}_a", template, profile=carried)
    of_the_send = requested(
        f"prf_{run}_b", template, profile=carried, subscription_topic="newsletter"
    )
    await content_service.publish(of_the_template, of_the_send)
    ids = {of_the_template.data.request_id, of_the_send.data.request_id}

    async def rendered() -> bool:
        return len(await content_service.rendered_for(ids)) == 2

    await wait_for(rendered, within=60, what="both requests rendered")
    messages = await content_service.rendered_for(ids)
    assert messages[of_the_template.data.request_id].subscription_topic == "promotions"
    assert messages[of_the_send.data.request_id].subscription_topic == "newsletter"

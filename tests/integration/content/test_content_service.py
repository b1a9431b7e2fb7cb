"""The content service over the real broker and database: requests carrying their profile's
facts in, tracked messages out, decisions following merges and erasures, the bandit fed by
outcomes, strict previews, poison to the DLQ, copy suggestions. Content is never sent a
`profile.updated` it would need: it keeps no copy of profiles."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from typing import Any

import pytest

from libs.common.bus import dlq
from libs.common.events import ContactRule, MessageClicked, MessageSent
from libs.common.tracking import verify
from libs.devstack.pytest_plugin import ServiceLauncher
from tests.events import conversion, erasure, facts, merge, profile_updated, requested
from tests.integration.content.harness import (
    ContentHarness,
    FakeChatCompletions,
    email_template,
    outcome,
)
from tests.integration.support import wait_for

pytestmark = pytest.mark.integration


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def test_a_request_becomes_a_tracked_message_for_the_profile_it_carries(
    content_service: ContentHarness,
) -> None:
    """The address, the name and the zone come with the request: content has never been sent
    an event about this profile."""
    template, profile = _unique("tpl"), _unique("prf")
    body = email_template(template)
    html = body["variants"][0]["html"]
    body["variants"][0]["html"] = f"<p>Dear {{{{ profile.traits.first_name }}}}</p>{html}"
    created = await content_service.create(body)
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1
    carried = facts(email="li@example.com", first_name="Li", timezone="Asia/Shanghai")
    request = requested(
        profile, template, profile=carried, variables={"event": {"event": "cart_abandoned"}}
    )
    await content_service.publish(request)

    async def answered() -> bool:
        return bool(await content_service.rendered(request.data.request_id))

    await wait_for(answered, within=60, what="message.rendered for the request")
    [message] = await content_service.rendered(request.data.request_id)
    assert message.recipient == "li@example.com"
    assert message.subject == "Hi Li, your tea is waiting"
    assert message.variant_id == "a" and message.template_version == 1
    assert message.idempotency_key == request.data.idempotency_key
    assert message.time_zone == "Asia/Shanghai"  # for dispatch's quiet hours
    body_html = message.body or ""
    assert "Dear Li" in body_html
    assert "Use WELCOME" in body_html  # the declared default, since the request had no coupon
    assert "shop.example.com" not in body_html
    secret = content_service.stack.tracking_secret
    tokens = {
        action: [verify(t, secret) for t in re.findall(rf"/{action}/([\w-]+\.[\w-]+)", body_html)]
        for action in ("c", "o", "u")
    }
    assert [t.url for t in tokens["c"]] == ["https://shop.example.com/p/1"]
    assert [t.action for t in tokens["o"]] == ["open"]
    assert [t.action for t in tokens["u"]] == ["unsubscribe"]
    assert {t.idempotency_key for ts in tokens.values() for t in ts} == {
        request.data.idempotency_key
    }


async def test_every_put_makes_a_new_version_that_messages_name(
    content_service: ContentHarness,
) -> None:
    template, profile = _unique("tpl"), _unique("prf")
    (await content_service.create(email_template(template))).raise_for_status()
    changed = email_template(template, name="second")
    changed["variants"][0]["subject"] = "Version two for {{ profile.traits.first_name }}"
    replaced = await content_service.http.put(f"/templates/{template}", json=changed)
    assert replaced.status_code == 200 and replaced.json()["version"] == 2
    request = requested(profile, template, profile=facts(email="v2@example.com"))
    await content_service.publish(request)

    async def answered() -> bool:
        return bool(await content_service.rendered(request.data.request_id))

    await wait_for(answered, within=60, what="message.rendered for the new version")
    [message] = await content_service.rendered(request.data.request_id)
    assert message.template_version == 2
    assert message.subject == "Version two for"  # no name and no default: empty


async def test_the_contact_rule_is_passed_on_and_a_transactional_template_overrides_it(
    content_service: ContentHarness,
) -> None:
    marketing, receipt, profile = _unique("tpl"), _unique("tpl"), _unique("prf")
    (await content_service.create(email_template(marketing))).raise_for_status()
    created = await content_service.create({**email_template(receipt), "transactional": True})
    assert created.status_code == 201, created.text
    assert created.json()["transactional"] is True
    rule = ContactRule(priority=80, on_conflict="defer")
    carried = facts(email="rules@example.com")
    requests = [
        requested(profile, template, profile=carried, contact=rule)
        for template in (marketing, receipt)
    ]
    await content_service.publish(*requests)

    ids = [request.data.request_id for request in requests]

    async def answered() -> bool:
        return len(await content_service.rendered_for(ids)) == 2

    await wait_for(answered, within=60, what="message.rendered for both requests")
    found = await content_service.rendered_for(ids)
    assert found[ids[0]].contact == rule
    assert found[ids[1]].contact == ContactRule(transactional=True)


async def test_a_request_without_an_address_is_answered_at_once_as_undeliverable(
    content_service: ContentHarness,
) -> None:
    """No later event could bring the address: the decision is made when the request comes.
    A request made before requests carried their profile has no address either."""
    template, profile = _unique("tpl"), _unique("prf")
    (await content_service.create(email_template(template))).raise_for_status()
    no_address = requested(profile, template, profile=facts(first_name="No Mail"))
    legacy = requested(profile, template)
    await content_service.publish(no_address, legacy)
    ids = [no_address.data.request_id, legacy.data.request_id]

    async def decided() -> bool:
        return len(await content_service.decisions(ids)) == 2

    await wait_for(decided, within=60, what="both requests decided")
    decisions = await content_service.decisions(ids)
    assert {row["outcome"] for row in decisions.values()} == {"undeliverable"}
    assert {row["variant_id"] for row in decisions.values()} == {None}
    response = await content_service.http.get(f"/templates/{template}/variants")
    assert response.json()["decisions"] == {"undeliverable": 2}
    assert await content_service.rendered_for(ids) == {}


async def test_a_wecom_customer_is_addressed_by_their_external_userid(
    content_service: ContentHarness,
) -> None:
    template, profile = _unique("tpl"), _unique("prf")
    variant = {
        "id": "only",
        "title": "Spring tea is in, {{ profile.traits.first_name }}",
        "description": "Ten new oolongs",
        "url": "https://shop.example.com/spring",
    }
    body = {"id": template, "name": template, "channel": "wecom_contact", "variants": [variant]}
    created = await content_service.create(body)
    assert created.status_code == 201, created.text
    carried = facts(first_name="Li", wecom_userid="lisi", wecom_external_userid="wmAbC123")
    request = requested(profile, template, channel="wecom_contact", profile=carried)
    await content_service.publish(request)

    async def answered() -> bool:
        return bool(await content_service.rendered(request.data.request_id))

    await wait_for(answered, within=60, what="message.rendered for the customer")
    [message] = await content_service.rendered(request.data.request_id)
    assert message.recipient == "wmAbC123"
    assert (message.subject, message.body) == ("Spring tea is in, Li", "Ten new oolongs")
    token = message.payload["url"].rsplit("/", 1)[1]
    assert verify(token, content_service.stack.tracking_secret).url == variant["url"]


async def test_a_webhook_renders_the_profile_the_request_carries(
    content_service: ContentHarness,
) -> None:
    """A webhook needs no address: its payload is rendered from the request's facts, and from
    an empty profile for a request that carries none."""
    template = _unique("tpl")
    webhook = {
        "id": template,
        "name": template,
        "channel": "webhook",
        "variants": [{"id": "a", "payload": {"name": "{{ profile.traits.first_name }}"}}],
    }
    (await content_service.create(webhook)).raise_for_status()
    carried = requested(
        _unique("prf"), template, channel="webhook", profile=facts(first_name="Mei")
    )
    legacy = requested(_unique("prf"), template, channel="webhook")
    await content_service.publish(carried, legacy)
    ids = [carried.data.request_id, legacy.data.request_id]

    async def answered() -> bool:
        return len(await content_service.rendered_for(ids)) == 2

    await wait_for(answered, within=60, what="both webhooks rendered")
    messages = await content_service.rendered_for(ids)
    assert messages[carried.data.request_id].payload == {"name": "Mei"}
    assert messages[legacy.data.request_id].payload == {"name": ""}
    assert {message.recipient for message in messages.values()} == {None}


async def test_content_skips_profile_updates_and_decisions_follow_merges_and_erasures(
    content_service: ContentHarness,
) -> None:
    """A `profile.updated` is passed over unread (content keeps no copy: a request without an
    address stays undeliverable however many updates gave one); a merge moves the merged
    profile's decisions to the survivor, an erasure deletes them."""
    template = _unique("tpl")
    merged, survivor = _unique("prf"), _unique("prf")
    (await content_service.create(email_template(template))).raise_for_status()
    first = requested(merged, template, profile=facts(email="m@example.com"))
    await content_service.publish(first)

    async def rendered() -> bool:
        return bool(await content_service.rendered(first.data.request_id))

    await wait_for(rendered, within=60, what="the merged profile's message")
    updates_before = await content_service.consumed("profile.updated")
    merges_before = await content_service.consumed("profile.merged")
    # One key, one partition: the merge is handled after the update before it.
    await content_service.publish(
        profile_updated(survivor, traits={"email": "s@example.com"}),
        merge(survivor, merged),
    )

    async def merge_handled() -> bool:
        return await content_service.consumed("profile.merged") > merges_before

    await wait_for(merge_handled, within=60, what="the merge handled")
    assert await content_service.consumed("profile.updated") == updates_before == 0
    legacy = requested(survivor, template)  # the update gave content no address
    await content_service.publish(legacy)

    async def both_survivors() -> bool:
        ids = [first.data.request_id, legacy.data.request_id]
        rows = await content_service.decisions(ids)
        return len(rows) == 2 and {row["profile_id"] for row in rows.values()} == {survivor}

    await wait_for(both_survivors, within=60, what="the decisions under the survivor")
    decisions = await content_service.decisions([legacy.data.request_id])
    assert decisions[legacy.data.request_id]["outcome"] == "undeliverable"
    await content_service.publish(erasure(survivor))

    async def erased() -> bool:
        ids = [first.data.request_id, legacy.data.request_id]
        return await content_service.decisions(ids) == {}

    await wait_for(erased, within=60, what="the survivor's decisions erased")


async def test_outcomes_and_conversions_feed_the_bandit(content_service: ContentHarness) -> None:
    template = _unique("tpl")
    body = email_template(template)
    body["variants"].append({**body["variants"][0], "id": "b"})
    (await content_service.create(body)).raise_for_status()
    messages = [_unique("msg") for _ in range(3)]
    clicked = "https://shop.example.com/p/1"
    await content_service.publish(
        *[outcome(MessageSent, template, "a", m) for m in messages],
        outcome(MessageClicked, template, "a", messages[0], url=clicked),
        # A second click on the same message is not a second success.
        outcome(MessageClicked, template, "a", messages[0], url=clicked),
        outcome(MessageSent, template, "b", _unique("msg")),
    )

    # Counts lose weight with age (a half-life of 30 days): seconds later, a hair below whole.
    async def counted() -> bool:
        response = await content_service.http.get(f"/templates/{template}/variants")
        stats = {v["variant_id"]: v for v in response.json()["variants"]}
        return bool(round(stats["a"]["trials"], 3) == 3 and round(stats["b"]["trials"], 3) == 1)

    await wait_for(counted, within=60, what="the bandit to count the outcomes")
    response = await content_service.http.get(f"/templates/{template}/variants")
    stats = {v["variant_id"]: v for v in response.json()["variants"]}
    assert stats["a"]["successes"] == pytest.approx(1, rel=1e-4) and stats["b"]["successes"] == 0
    assert stats["a"]["posterior_mean"] == pytest.approx(2 / 5, rel=1e-4)
    assert stats["a"]["probability_best"] is None  # not evaluated yet
    assert (stats["a"]["sends"], stats["a"]["clicks"]) == pytest.approx((3, 1), rel=1e-4)
    assert (stats["b"]["sends"], stats["b"]["clicks"]) == pytest.approx((1, 0), rel=1e-4)
    assert stats["a"]["conversions"] == 0
    # The policy's split now: each variant's share of the requests to come.
    assert stats["a"]["split"] + stats["b"]["split"] == pytest.approx(1)
    assert 0 < stats["a"]["split"] < 1 and 0 < stats["b"]["split"] < 1
    evaluated = await content_service.http.post(f"/templates/{template}/evaluate")
    best = evaluated.json()["experiment"]["probability_best"]
    assert set(best) == {"a", "b"} and sum(best.values()) == pytest.approx(1)

    conversions_template = _unique("tpl")
    (
        await content_service.create(email_template(conversions_template, reward="conversions"))
    ).raise_for_status()
    message = _unique("msg")
    # The send first: a conversion counts in the context its send was counted in, and the two
    # travel on topics that are not ordered with each other.
    await content_service.publish(outcome(MessageSent, conversions_template, "a", message))

    async def trial_counted() -> bool:
        response = await content_service.http.get(f"/templates/{conversions_template}/variants")
        [variant] = response.json()["variants"]
        return bool(round(variant["trials"], 3) == 1)

    await wait_for(trial_counted, within=60, what="the send counted as a trial")
    await content_service.publish(
        conversion(
            _unique("prf"),
            message,
            conversion_id=_unique("cnv"),
            value=Decimal("12.50"),
            currency="CNY",
            template_id=conversions_template,
            variant_id="a",
            share=0.5,
            key="prf_x",
        )
    )

    async def converted() -> bool:
        response = await content_service.http.get(f"/templates/{conversions_template}/variants")
        [variant] = response.json()["variants"]
        return bool(round(variant["trials"], 3) == 1 and round(variant["successes"], 3) == 0.5)

    await wait_for(converted, within=60, what="the conversion credited to the variant")
    response = await content_service.http.get(f"/templates/{conversions_template}/variants")
    [variant] = response.json()["variants"]
    assert variant["conversions"] == pytest.approx(0.5, rel=1e-4) and variant["clicks"] == 0
    assert variant["split"] == 1.0


async def test_preview_is_strict_and_names_the_missing_variable(
    content_service: ContentHarness,
) -> None:
    template = _unique("tpl")
    (await content_service.create(email_template(template))).raise_for_status()
    missing = await content_service.http.post(
        f"/templates/{template}/preview", json={"profile": {"traits": {"first_name": "Li"}}}
    )
    assert missing.status_code == 422, missing.text
    assert missing.json()["error"]["code"] == "missing_variable"
    assert missing.json()["error"]["field"] == "coupon_code"
    inline = await content_service.http.post(
        f"/templates/{template}/preview",
        json={"profile": {"traits": {"first_name": "Li"}}, "variables": {"coupon_code": "C1"}},
    )
    assert inline.status_code == 200, inline.text
    assert inline.json()["fields"]["subject"] == "Hi Li, your tea is waiting"
    # Content keeps no profiles: a preview is for the facts given, as a request carries them.
    by_id = await content_service.http.post(
        f"/templates/{template}/preview",
        json={"profile_id": _unique("prf"), "variables": {"coupon_code": "C1"}},
    )
    assert by_id.status_code == 422, by_id.text
    internals = await content_service.http.post(
        f"/templates/{template}/preview",
        json={"variables": {"coupon_code": "{{ profile.__class__ }}"}},
    )
    assert internals.status_code == 422  # first_name is missing from an empty profile


async def test_invalid_templates_are_refused_with_the_field(
    content_service: ContentHarness,
) -> None:
    body = email_template(_unique("tpl"))
    body["variants"][0]["html"] = "{% if x %}never closed"
    response = await content_service.create(body)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "variants.0.html"
    sms_with_subject = email_template(_unique("tpl"), channel="sms")
    response = await content_service.create(sms_with_subject)
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_variant"
    assert (await content_service.http.get(f"/templates/{_unique('tpl')}")).status_code == 404


async def test_requests_for_unknown_templates_go_to_the_dlq_at_once_and_the_consumer_goes_on(
    content_service: ContentHarness,
) -> None:
    template, profile = _unique("tpl"), _unique("prf")
    (await content_service.create(email_template(template))).raise_for_status()
    address = facts(email="go@example.com")
    # More in a row than the consumer's limit of consecutive failures (5): these are the
    # requests' fault, not an outage, so none of them may stop the consumer.
    poison = [requested(profile, _unique("tpl_missing"), profile=address) for _ in range(8)]
    good = requested(profile, template, profile=address)
    await content_service.publish(*poison, good)

    async def dead_lettered() -> bool:
        return all([await content_service.dead_letters(p.id) for p in poison])

    await wait_for(dead_lettered, within=60, what="the unknown templates' requests in the DLQ")
    for request in poison:
        [letter] = await content_service.dead_letters(request.id)
        assert letter[dlq.ERROR_TYPE] == "UnknownTemplate"
        assert request.data.template_id in letter[dlq.ERROR]

    async def good_one_rendered() -> bool:
        return bool(await content_service.rendered(good.data.request_id))

    await wait_for(good_one_rendered, within=60, what="the good request after the poison")


async def test_copy_suggestions_offline_recombine_the_best_variants(
    content_service: ContentHarness,
) -> None:
    response = await content_service.http.post(
        "/copy/suggestions", json={"channel": "email", "brief": "tea is waiting", "count": 2}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["source"] == "offline" and "No model" in answer["note"]
    assert 1 <= len(answer["suggestions"]) <= 2
    assert {"subject", "html"} <= set(answer["suggestions"][0]["fields"])


async def test_copy_suggestions_from_an_openai_compatible_model(
    content_service: ContentHarness, service_process: ServiceLauncher
) -> None:
    suggestion: dict[str, Any] = {
        "subject": "{{ profile.traits.first_name }}, your oolong misses you",
        "html": "<p>Come back for 15% off.</p>",
    }
    fake = FakeChatCompletions({"suggestions": [suggestion, {"subject": "no body"}]})
    with fake.serving() as base_url:
        process = await service_process(
            "services.content",
            name=content_service.process.name,
            env={
                "CLOSELOOP_CONTENT_LLM_BASE_URL": base_url,
                "CLOSELOOP_CONTENT_LLM_MODEL": "test-model",
                "CLOSELOOP_CONTENT_LLM_API_KEY": "sk-test",
            },
            ready_timeout=60,
        )
        async with content_service.http.__class__(
            base_url=process.url, headers=content_service.http.headers, timeout=30
        ) as http:
            response = await http.post(
                "/copy/suggestions", json={"channel": "email", "brief": "win back tea buyers"}
            )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["source"] == "llm"
    assert [s["fields"] for s in answer["suggestions"]] == [suggestion]
    [sent] = fake.requests
    assert sent["model"] == "test-model"
    assert sent["messages"][-1] == {"role": "user", "content": "win back tea buyers"}
    assert fake.authorizations == ["Bearer sk-test"]

"""Subscription topics: what decides a message of a topic, the signed preference link, the page
and its form, and the one-click unsubscribe headers of email."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from libs.common.contact_policy import (
    Decision,
    Preferences,
    SendPolicy,
    TopicRule,
    TraitAnswers,
    decide,
    merged_preferences,
)
from services.dispatch.channels.base import OutgoingMessage
from services.dispatch.channels.config import EmailConfig
from services.dispatch.channels.email import EmailChannel, flattened
from services.dispatch.subscriptions import (
    InvalidAnswers,
    InvalidPreferenceLink,
    SubscriptionTopic,
    answers_from_form,
    preference_page,
    sign_preference_link,
    verify_preference_link,
)

NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
NEWSLETTER = TopicRule("newsletter")
SECRET = "s3cret"


def _decide(channel: str = "email", **kwargs: Any) -> Decision:
    values: dict[str, Any] = {
        "preferences": Preferences(),
        "policy": SendPolicy(),
        "sent": [],
        "zone": ZoneInfo("UTC"),
        "default_consent": True,
    }
    values.update(kwargs)
    return decide(channel, NOW, **values)


def test_unsubscribed_from_a_topic_on_a_channel_suppresses_that_topic_there_only() -> None:
    prefs = Preferences(topics={"newsletter": {"email": False}})
    refused = _decide(preferences=prefs, topic=NEWSLETTER)
    assert (refused.action, refused.reason, refused.topic) == (
        "suppress",
        "unsubscribed",
        "newsletter",
    )
    assert _decide("sms", preferences=prefs, topic=NEWSLETTER).action == "send"
    assert _decide(preferences=prefs, topic=TopicRule("promotions")).action == "send"
    assert _decide(preferences=prefs).action == "send"  # a message of no topic


def test_an_opt_in_topic_needs_a_yes_from_either_source() -> None:
    opt_in = TopicRule("product_news", default_subscribed=False)
    refused = _decide(topic=opt_in)
    assert (refused.reason, refused.topic) == ("consent", "product_news")
    recorded = Preferences(topics={"product_news": {"email": True}})
    assert _decide(preferences=recorded, topic=opt_in).action == "send"
    carried = TraitAnswers(subscriptions={"product_news": {"*": True}})
    assert _decide(traits=carried, topic=opt_in).action == "send"


def test_a_no_from_the_traits_holds_over_a_recorded_yes() -> None:
    recorded = Preferences(consent={"email": True}, topics={"newsletter": {"email": True}})
    no_email = TraitAnswers(consent={"email": False})
    assert _decide(preferences=recorded, traits=no_email).reason == "consent"
    no_newsletter = TraitAnswers(subscriptions={"newsletter": {"*": False}})
    decision = _decide(preferences=recorded, traits=no_newsletter, topic=NEWSLETTER)
    assert (decision.reason, decision.topic) == ("unsubscribed", "newsletter")
    elsewhere = TraitAnswers(subscriptions={"newsletter": {"sms": False}})
    assert _decide(preferences=recorded, traits=elsewhere, topic=NEWSLETTER).action == "send"


def test_a_yes_from_the_traits_gives_consent_where_the_default_is_no() -> None:
    assert _decide(default_consent=False).reason == "consent"
    opted_in = TraitAnswers(consent={"email": True})
    assert _decide(default_consent=False, traits=opted_in).action == "send"


def test_merged_profiles_keep_every_topic_unsubscribe() -> None:
    survivor = Preferences(topics={"newsletter": {"email": True}, "promotions": {"sms": True}})
    merged = [Preferences(topics={"newsletter": {"email": False, "sms": True}})]
    result = merged_preferences(survivor, merged)
    assert result.topics == {
        "newsletter": {"email": False, "sms": True},
        "promotions": {"sms": True},
    }


def test_a_preference_link_names_its_profile_until_it_expires() -> None:
    token = sign_preference_link("prf_1", NOW + timedelta(days=30), SECRET)
    assert verify_preference_link(token, SECRET, NOW) == "prf_1"
    with pytest.raises(InvalidPreferenceLink) as expired:
        verify_preference_link(token, SECRET, NOW + timedelta(days=30))
    assert expired.value.code == "link_expired"


@pytest.mark.parametrize("tamper", ["secret", "body", "signature", "garbage"])
def test_a_tampered_preference_link_is_refused(tamper: str) -> None:
    token = sign_preference_link("prf_1", NOW + timedelta(days=1), SECRET)
    body, signature = token.split(".")
    other = sign_preference_link("prf_2", NOW + timedelta(days=1), SECRET).split(".")[0]
    forged = {
        "secret": sign_preference_link("prf_1", NOW + timedelta(days=1), "other"),
        "body": f"{other}.{signature}",
        "signature": f"{body}.{signature[:-2]}AA",
        "garbage": "not-a-link",
    }[tamper]
    with pytest.raises(InvalidPreferenceLink) as refused:
        verify_preference_link(forged, SECRET, NOW)
    assert refused.value.code == "invalid_link"


TOPICS = [
    SubscriptionTopic("newsletter", "Newsletter", "Monthly <b>tea</b> news", ("email", "sms")),
    SubscriptionTopic("promotions", '<script>alert("x")</script>', "", ("email",)),
]


def test_the_page_ticks_subscribed_boxes_and_escapes_names() -> None:
    page = preference_page(TOPICS, {"newsletter": {"sms": False}})
    assert '<input type="checkbox" name="newsletter:email"' in page
    assert 'name="newsletter:email" aria-label="Newsletter by email" checked>' in page
    assert 'name="newsletter:sms" aria-label="Newsletter by sms">' in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>tea</b>" not in page
    assert 'name="shown" value="newsletter,promotions"' in page


def test_the_form_answers_every_box_of_the_topics_it_showed() -> None:
    fields = [("shown", "newsletter,promotions,gone"), ("newsletter:sms", "on")]
    assert answers_from_form(fields, TOPICS) == {
        "newsletter": {"email": False, "sms": True},
        "promotions": {"email": False},
    }
    assert answers_from_form([("shown", "promotions")], TOPICS) == {"promotions": {"email": False}}


def test_a_box_the_page_did_not_show_is_refused_by_name() -> None:
    with pytest.raises(InvalidAnswers) as refused:
        answers_from_form([("shown", "promotions"), ("newsletter:email", "on")], TOPICS)
    assert refused.value.field == "newsletter:email"


def _mail(unsubscribe_url: str | None, mailto: str | None = None) -> email.message.Message:
    config = EmailConfig(
        host="smtp.example.com", from_address="news@shop.example.com", unsubscribe_mailto=mailto
    )
    message = OutgoingMessage(
        message_id="msg_1",
        idempotency_key="jrn:v1:n:p:1",
        profile_id="p",
        channel="email",
        recipient="li@example.com",
        subject="Hi",
        body="<p>Hello</p>",
        unsubscribe_url=unsubscribe_url,
    )
    raw = flattened(EmailChannel(config, 5).compose(message, "li@example.com"), "li@example.com")
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_a_topic_email_carries_rfc_8058_headers_unfolded_and_other_email_none() -> None:
    token = "A" * 200 + "." + "b" * 43
    url = f"https://t.example.com/u/{token}"
    mail = _mail(url, "unsubscribe@shop.example.com")
    mailto = f"mailto:unsubscribe@shop.example.com?subject=unsubscribe%20{token}"
    assert mail["List-Unsubscribe"] == f"<{url}>, <{mailto}>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert _mail(url)["List-Unsubscribe"] == f"<{url}>"
    plain = _mail(None)
    assert plain["List-Unsubscribe"] is None and plain["List-Unsubscribe-Post"] is None

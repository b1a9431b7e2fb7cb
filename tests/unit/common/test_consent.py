"""The mapping from source systems' traits to consent and subscriptions."""

from __future__ import annotations

from libs.common.consent import consent_from_traits


def test_opt_in_traits_give_or_withdraw_consent_per_channel() -> None:
    consent = consent_from_traits({"email_opt_in": False, "sms_opt_in": True, "first_name": "Li"})
    assert consent is not None
    assert consent.channels == {"email": False, "sms": True}
    assert consent.subscriptions == {}


def test_subscriptions_name_topics_on_every_channel_or_on_some() -> None:
    consent = consent_from_traits(
        {"subscriptions": {"newsletter": False, "promotions": {"email": False, "sms": True}}}
    )
    assert consent is not None
    assert consent.subscriptions == {
        "newsletter": {"*": False},
        "promotions": {"email": False, "sms": True},
    }


def test_only_booleans_under_valid_names_count() -> None:
    ignored = {
        "email_opt_in": "false",
        "Email_opt_in": False,
        "_opt_in": False,
        "subscriptions": {"News Letter": False, "promotions": "no", "deals": {"E-mail": False}},
    }
    assert consent_from_traits(ignored) is None
    assert consent_from_traits({}) is None
    assert consent_from_traits({"subscriptions": ["newsletter"]}) is None

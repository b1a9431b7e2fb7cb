"""The template editor's pure parts: the form read into the content service's request and its
refusals put back on their inputs, whose facts a preview is for, an SMS's length, the split."""

from __future__ import annotations

from typing import Any

import pytest

from libs.common.errors import ApiError
from services.console.template_drafts import TemplateDraft, definition
from services.console.template_previews import (
    ProfileQuery,
    facts_of,
    profile_query,
    sms_length,
    split_bars,
    variant_standings,
)

_TEMPLATE: dict[str, Any] = {
    "id": "tpl_x",
    "name": "Win back",
    "channel": "push",
    "version": 3,
    "defaults": {"coupon_code": "WELCOME"},
    "variants": [
        {"id": "a", "name": "", "title": "Hi {{ profile.traits.first_name }}", "body": "b"},
        {"id": "b", "name": "short", "title": "Hey", "body": "c", "data": {"deep": "x"}},
    ],
    "reward": "conversions",
    "holdout_share": 0.1,
    "topic": "win_back_offers",
    "transactional": True,
    "created_at": "2025-01-01T00:00:00Z",
    "updated_at": "2025-01-02T00:00:00Z",
}


def test_a_template_read_into_the_form_and_posted_back_is_the_same_request() -> None:
    draft = TemplateDraft.of_template(_TEMPLATE)
    fields = {"name": draft.name, "reward": draft.reward, "holdout_share": draft.holdout_share}
    fields["defaults"] = draft.defaults
    fields["topic"] = draft.topic
    if draft.transactional:
        fields["transactional"] = "on"  # what a browser posts for a ticked box
    for variant in draft.variants:
        fields[f"variants.{variant.index}.id"] = variant.id
        fields[f"variants.{variant.index}.name"] = variant.name
        for name, text in variant.fields.items():
            fields[f"variants.{variant.index}.{name}"] = text
    posted = TemplateDraft.of_form(fields, template_id="tpl_x", channel="push")
    assert posted.body() == {
        "id": "tpl_x",
        "name": "Win back",
        "channel": "push",
        "defaults": {"coupon_code": "WELCOME"},
        "variants": [
            {"id": "a", "title": "Hi {{ profile.traits.first_name }}", "body": "b"},
            {"id": "b", "name": "short", "title": "Hey", "body": "c", "data": {"deep": "x"}},
        ],
        "reward": "conversions",
        "holdout_share": 0.1,
        "topic": "win_back_offers",
        "transactional": True,
    }


def test_the_form_keeps_its_variants_in_index_order_and_only_the_channels_fields() -> None:
    fields = {
        "name": "Sms",
        "variants.7.id": "late",
        "variants.7.text": "second",
        "variants.2.id": "early",
        "variants.2.text": "first\r\nline",
        "variants.2.subject": "not an sms field",
    }
    body = TemplateDraft.of_form(fields, template_id="", channel="sms").body()
    assert body["variants"] == [
        {"id": "early", "text": "first\nline"},
        {"id": "late", "text": "second"},
    ]
    assert "id" not in body  # a new template's id is made by the service


def test_a_mini_program_template_is_edited_as_its_data_and_page() -> None:
    fields = {
        "name": "Shipped",
        "variants.0.id": "only",
        "variants.0.data": '{"thing1": {"value": "Shipped"}}',
        "variants.0.url": "pages/order/detail?id=7",
        "variants.0.title": "not a subscribe message field",
    }
    draft = TemplateDraft.of_form(fields, template_id="", channel="wechat_miniprogram")
    assert draft.body()["variants"] == [
        {"id": "only", "data": {"thing1": {"value": "Shipped"}}, "url": "pages/order/detail?id=7"}
    ]


def test_a_wecom_customer_contact_template_is_edited_as_its_text_and_link() -> None:
    fields = {
        "name": "Spring tea",
        "variants.0.id": "only",
        "variants.0.title": "Spring tea is in",
        "variants.0.url": "https://shop.example.com/spring",
        "variants.0.data": '{"first": {"value": "not a customer-contact field"}}',
    }
    draft = TemplateDraft.of_form(fields, template_id="", channel="wecom_contact")
    assert draft.body()["variants"] == [
        {"id": "only", "title": "Spring tea is in", "url": "https://shop.example.com/spring"}
    ]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"defaults": "{not json"}, "defaults"),
        ({"defaults": "[1]"}, "defaults"),
        ({"holdout_share": "half"}, "holdout_share"),
        ({"reward": "opens"}, "reward"),
        (
            {"variants.4.id": "a", "variants.4.title": "t", "variants.4.data": "[]"},
            "variants.4.data",
        ),
    ],
)
def test_what_the_console_cannot_read_is_refused_naming_its_input(
    fields: dict[str, str], field: str
) -> None:
    draft = TemplateDraft.of_form({"name": "n", **fields}, template_id="", channel="push")
    with pytest.raises(ApiError) as refused:
        draft.body()
    assert refused.value.status_code == 422
    assert refused.value.field == field


def test_a_refusal_from_the_service_finds_the_input_it_names() -> None:
    fields = {"variants.3.id": "a", "variants.3.html": "x", "variants.9.id": "b"}
    draft = TemplateDraft.of_form({"name": "n", **fields}, template_id="", channel="email")
    # The service counts variants in the order sent: its 1 is the form's 9.
    assert draft.input_for("variants.1.html") == "variants.9.html"
    assert draft.input_for("variants.0.html") == "variants.3.html"
    assert draft.input_for("body.variants.1.id") == "variants.9.id"
    assert draft.input_for("body.holdout_share") == "holdout_share"
    assert draft.input_for("defaults.profile.traits.x") == "defaults"
    assert draft.input_for("variants.0") is None
    assert draft.input_for("variants.5.html") is None
    assert draft.input_for(None) is None
    push = TemplateDraft.of_form({"variants.0.id": "a"}, template_id="", channel="push")
    assert push.input_for("variants.0.data.order.id") == "variants.0.data"


def test_the_audit_keeps_what_a_person_wrote_not_the_services_times() -> None:
    kept = definition(_TEMPLATE)
    assert "updated_at" not in kept and "created_at" not in kept
    assert kept["variants"] == _TEMPLATE["variants"] and kept["version"] == 3


@pytest.mark.parametrize(
    ("who", "query"),
    [
        ("prf_abc-1", ProfileQuery(profile_id="prf_abc-1")),
        (" mei@example.org ", ProfileQuery(identifier="email:mei@example.org")),
        ("user_id:u1", ProfileQuery(identifier="user_id:u1")),
        ("u1", ProfileQuery(identifier="user_id:u1")),
        ("prf_../segments", ProfileQuery(identifier="user_id:prf_../segments")),
    ],
)
def test_a_person_is_found_by_profile_id_or_identifier(who: str, query: ProfileQuery) -> None:
    assert profile_query(who) == query


def test_nobody_named_is_refused_naming_the_profile_field() -> None:
    for who in ("", "  ", "x" * 600, "a\x00b"):
        with pytest.raises(ApiError) as refused:
            profile_query(who)
        assert refused.value.field == "profile"


def test_a_profiles_facts_are_those_a_request_carries() -> None:
    profile = {
        "id": "prf_x",
        "traits": {"first_name": "Mei"},
        "tags": ["vip"],
        "lifecycle_stage": "active",
        "scores": {"rfm": 455, "recency": 4, "frequency": 5, "monetary": 5},
        "top_categories": ["tea", "cups"],
        "engagement": {
            "by_channel": {"email": {"sent": 3, "clicked": 1}},
            "last_engaged_at": "2025-03-01T00:00:00Z",
            "attributed_conversions": 0.5,
            "attributed_revenue": {"CNY": 10.0, "EUR": 2.5},
        },
        "predictions": {
            "scores": {"churn_risk": 0.2, "p_alive": 0.9, "fit_id": 4, "scored_at": "x"},
            "unscored_because": None,
        },
    }
    assert facts_of(profile) == {
        "traits": {"first_name": "Mei"},
        "tags": ["vip"],
        "lifecycle_stage": "active",
        "scores": {
            "rfm": 455,
            "churn_risk": 0.2,
            "p_alive": 0.9,
            "email_sent": 3,
            "email_clicked": 1,
            "last_engaged_at": "2025-03-01T00:00:00Z",
            "attributed_conversions": 0.5,
            "attributed_revenue": 12.5,
        },
        "top_category": "tea",
    }
    bare = facts_of({"id": "prf_y", "traits": {}, "tags": [], "top_categories": []})
    assert bare == {
        "traits": {},
        "tags": [],
        "lifecycle_stage": None,
        "scores": {},
        "top_category": None,
    }


@pytest.mark.parametrize(
    ("text", "encoding", "characters", "segments"),
    [
        ("", "GSM-7", 0, 0),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),  # an extension character takes two
        ("你" * 70, "UCS-2", 70, 1),
        ("你" * 71, "UCS-2", 71, 2),
        ("🍵" * 35, "UCS-2", 70, 1),  # outside the BMP: two UTF-16 units
    ],
)
def test_an_sms_is_counted_as_a_carrier_counts_it(
    text: str, encoding: str, characters: int, segments: int
) -> None:
    length = sms_length(text)
    assert (length.encoding, length.characters, length.segments) == (
        encoding,
        characters,
        segments,
    )


def test_the_split_bar_lays_the_shares_side_by_side() -> None:
    bars = split_bars([("a", 0.75), ("b", 0.25)])
    assert [(bar.variant_id, bar.x, bar.width, bar.colour) for bar in bars] == [
        ("a", 0.0, 75.0, 0),
        ("b", 75.0, 25.0, 1),
    ]


def test_a_variants_rates_are_of_its_sends() -> None:
    answer = {
        "variants": [
            {
                "variant_id": "a",
                "name": "",
                "trials": 10.0,
                "successes": 2.0,
                "posterior_mean": 0.25,
                "probability_best": None,
                "sends": 10.0,
                "clicks": 2.0,
                "conversions": 0.5,
                "split": 0.6,
            },
            {"variant_id": "b", "trials": 0.0, "successes": 0.0, "posterior_mean": 0.5},
        ]
    }
    a, b = variant_standings(answer)
    assert (a.click_rate, a.conversion_rate, a.split) == (0.2, 0.05, 0.6)
    assert (b.sends, b.click_rate, b.conversion_rate, b.split) == (0.0, None, None, None)

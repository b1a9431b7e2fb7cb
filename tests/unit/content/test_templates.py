"""Templates: channel fields, Liquid inside JSON, defaults, offline copy suggestions."""

from __future__ import annotations

from services.content.copywriting import RankedVariant, recombine
from services.content.messages import template_variables, with_defaults
from services.content.templates import assemble, field_problems, liquid_sources


def test_each_channel_needs_its_fields_and_refuses_others() -> None:
    assert list(field_problems("email", {"subject": "s", "html": "h"})) == []
    assert [f for f, _ in field_problems("email", {"subject": "s", "text": "t", "title": "x"})] == [
        "html",
        "title",
    ]
    assert [f for f, _ in field_problems("webhook", {})] == ["payload"]


def test_a_mini_program_variant_is_its_subscribe_data_and_a_page() -> None:
    assert list(field_problems("wechat_miniprogram", {"data": {}, "url": "pages/a"})) == []
    assert [f for f, _ in field_problems("wechat_miniprogram", {"title": "Hi"})] == [
        "data",
        "title",
    ]


def test_a_wecom_customer_contact_variant_is_its_text_and_a_link() -> None:
    variant = {"title": "Spring tea", "description": "Ten oolongs", "url": "https://s.example"}
    assert list(field_problems("wecom_contact", variant)) == []
    assert [f for f, _ in field_problems("wecom_contact", {"data": {}})] == ["title", "data"]


def test_json_string_values_are_liquid_sources_put_back_in_place() -> None:
    variant = {"payload": {"order": {"id": "{{ event.id }}", "n": 2}, "a/b": ["{{ x }}", True]}}
    sources = liquid_sources(variant)
    assert sources == {"payload/order/id": "{{ event.id }}", "payload/a~1b/0": "{{ x }}"}
    rendered = assemble(variant, {"payload/order/id": "o1", "payload/a~1b/0": "X"})
    assert rendered == {"payload": {"order": {"id": "o1", "n": 2}, "a/b": ["X", True]}}


def test_declared_defaults_fill_only_what_is_missing() -> None:
    variables = template_variables(
        {"event": {"event": "cart"}, "profile": "spoofed"},
        profile={"id": "p", "traits": {"first_name": "Li"}},
        journey=None,
        unsubscribe_url="u",
    )
    filled, applied = with_defaults(
        variables,
        {"profile.traits.first_name": "friend", "profile.traits.city": "Hangzhou", "coupon": "C"},
    )
    assert filled["profile"]["traits"] == {"first_name": "Li", "city": "Hangzhou"}
    assert filled["coupon"] == "C" and applied == ["profile.traits.city", "coupon"]
    assert variables["profile"]["traits"] == {"first_name": "Li"}


def test_offline_suggestions_recombine_the_best_variants_first() -> None:
    ranked = [
        RankedVariant("t1", {"id": "a", "subject": "Oolong is back", "html": "A"}, 31 / 102),
        RankedVariant("t1", {"id": "b", "subject": "New tea", "html": "B"}, 6 / 102),
    ]
    suggestions = recombine(ranked, "email", "bring back oolong buyers", 3)
    assert suggestions[0].fields == {"html": "A", "subject": "Oolong is back"}
    assert len(suggestions) == 3
    assert len({tuple(sorted(s.fields.items())) for s in suggestions}) == 3
    sms = recombine([RankedVariant("t2", {"id": "s", "text": "Hi"}, 0.5)], "sms", "x", 5)
    assert [s.fields for s in sms] == [{"text": "Hi"}]

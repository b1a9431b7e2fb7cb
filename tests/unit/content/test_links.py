"""Link rewriting: every link becomes a signed click URL that verifies to where it pointed."""

from __future__ import annotations

import re

from libs.common.tracking import TrackingToken, verify
from services.content.links import rewrite_html, rewrite_text
from services.content.messages import Tracking, content_of

SECRET = "test-secret"
BASE = "https://t.example.com"
TRACKING = Tracking(BASE, SECRET, "jrn_1:v1:node_1:prf_1:1")


def _tokens(text: str, action: str) -> list[TrackingToken]:
    return [
        verify(t, SECRET)
        for t in re.findall(rf"{BASE}/{action}/([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)", text)
    ]


def test_every_http_link_of_html_is_rewritten_and_verifies_to_its_url() -> None:
    document = (
        '<a href="https://shop.example.com/p/1?a=1&amp;b=2">one</a> '
        "<a class='x' HREF='http://shop.example.com/two'>two</a> "
        '<a href="mailto:help@example.com">mail</a> <a href="#top">top</a>'
    )
    rewritten = rewrite_html(document, TRACKING.click, keep_prefix=BASE + "/")
    assert "shop.example.com" not in rewritten.replace(BASE, "")
    assert [t.url for t in _tokens(rewritten, "c")] == [
        "https://shop.example.com/p/1?a=1&b=2",
        "http://shop.example.com/two",
    ]
    assert all(
        t.action == "click" and t.idempotency_key == TRACKING.idempotency_key
        for t in _tokens(rewritten, "c")
    )
    assert 'href="mailto:help@example.com"' in rewritten and 'href="#top"' in rewritten


def test_urls_in_text_are_rewritten_without_their_trailing_punctuation() -> None:
    text = "Back in stock: https://shop.example.com/p/oolong. Or (https://x.example/a?b=1)!"
    rewritten = rewrite_text(text, TRACKING.click, keep_prefix=BASE + "/")
    assert [t.url for t in _tokens(rewritten, "c")] == [
        "https://shop.example.com/p/oolong",
        "https://x.example/a?b=1",
    ]
    assert rewritten.startswith("Back in stock: " + BASE) and rewritten.endswith(")!")


def test_email_gets_an_open_pixel_and_an_unsubscribe_footer() -> None:
    content = content_of(
        "email",
        {"subject": "Hi\r\nBcc: x@example.com", "html": "<html><body><p>Hi</p></body></html>"},
        TRACKING,
    )
    assert content.subject == "Hi Bcc: x@example.com"
    assert content.body is not None and content.body.endswith("</body></html>")
    assert [t.action for t in _tokens(content.body, "o")] == ["open"]
    assert [t.action for t in _tokens(content.body, "u")] == ["unsubscribe"]


def test_a_template_placing_the_unsubscribe_link_gets_no_second_one() -> None:
    html = f'<p><a href="{TRACKING.unsubscribe()}">Leave</a></p>'
    content = content_of("email", {"subject": "s", "html": html}, TRACKING)
    assert content.body is not None and content.body.count("/u/") == 1
    assert _tokens(content.body, "c") == []


def test_sms_and_push_links_are_tracked_and_webhook_payloads_are_not() -> None:
    sms = content_of("sms", {"text": "See https://s.example/x"}, TRACKING)
    assert sms.body is not None and [t.url for t in _tokens(sms.body, "c")] == [
        "https://s.example/x"
    ]
    push = content_of(
        "push", {"title": "t", "body": "https://s.example/y", "data": {"k": "v"}}, TRACKING
    )
    assert push.body is not None and _tokens(push.body, "c")[0].url == "https://s.example/y"
    assert push.payload == {"k": "v"}
    hook = content_of("webhook", {"payload": {"url": "https://s.example/z"}}, TRACKING)
    assert hook.payload == {"url": "https://s.example/z"} and hook.body is None


def test_a_card_link_is_tracked() -> None:
    card = content_of(
        "wecom", {"title": "t", "url": "https://s.example/c", "data": {"a": "b"}}, TRACKING
    )
    assert verify(card.payload["url"].rsplit("/", 1)[1], SECRET).url == "https://s.example/c"
    assert card.payload["data"] == {"a": "b"}


def test_a_mini_program_page_is_left_as_it_is_and_its_data_passed_on() -> None:
    data = {"thing1": {"value": "Your tea has shipped"}}
    fields = {"data": data, "url": " pages/order/detail?id=7 "}
    content = content_of("wechat_miniprogram", fields, TRACKING)
    assert (content.subject, content.body) == (None, None)
    assert content.payload == {"data": data, "url": "pages/order/detail?id=7"}
    assert content_of("wechat_miniprogram", {"data": data}, TRACKING).payload == {"data": data}

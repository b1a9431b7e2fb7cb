"""Adapters' pure parts: webhook signatures, Message-IDs, and how answers are classified."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from services.dispatch.channels.base import (
    OutgoingMessage,
    SendResult,
    classify_http,
    retry_after_seconds,
)
from services.dispatch.channels.email import classify_smtp, message_id_header
from services.dispatch.channels.push import fcm_message
from services.dispatch.channels.webhook import signature, webhook_body
from services.dispatch.channels.weixin import (
    CONTACT_REFUSALS,
    SUBSCRIBE_REFUSALS,
    TEMPLATE_REFUSALS,
    classify_errcode,
)
from services.dispatch.retries import next_step, retry_delay

MESSAGE = OutgoingMessage(
    message_id="msg_1",
    idempotency_key="jrn:v1:n:p:1",
    profile_id="p",
    channel="webhook",
    recipient=None,
    subject="Hi",
    body="Hello",
    payload={"badge": 1, "link": "app://x"},
    lineage={"template_id": "tpl"},
)


def test_webhook_signature_is_the_hex_hmac_of_the_exact_body() -> None:
    body = webhook_body(MESSAGE)
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert signature(body, "s3cret") == f"sha256={expected}"
    assert signature(body, "other") != signature(body, "s3cret")
    decoded = orjson.loads(body)
    assert decoded["idempotency_key"] == "jrn:v1:n:p:1"
    assert decoded["template_id"] == "tpl"


def test_message_id_is_stable_per_idempotency_key() -> None:
    first = message_id_header("key-1", "news@shop.example.com")
    assert first == message_id_header("key-1", "news@shop.example.com")
    assert first != message_id_header("key-2", "news@shop.example.com")
    assert first.startswith("<") and first.endswith("@shop.example.com>")


def test_http_answers_are_classified() -> None:
    assert classify_http(200, "") is None
    assert classify_http(202, "") is None
    for status in (408, 429, 500, 502, 503):
        result = classify_http(status, "x")
        assert result is not None and result.outcome == "transient", status
    for status in (400, 401, 403, 404, 410, 422):
        result = classify_http(status, "x")
        assert result is not None and result.outcome == "permanent", status


def test_a_throttled_answer_carries_the_wait_its_retry_after_asks_for() -> None:
    throttled = classify_http(429, "slow down", "7")
    assert throttled is not None and throttled.retry_after == 7.0
    busy = classify_http(503, "busy", None)
    assert busy is not None and busy.retry_after is None
    now = datetime(2026, 12, 7, 10, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("Mon, 07 Dec 2026 10:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Mon, 07 Dec 2026 09:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds("999999", now) is None  # more than a day: our own backoff


def test_a_retry_waits_at_least_what_the_provider_asked() -> None:
    limits: dict[str, Any] = {"max_attempts": 5, "base_seconds": 0.2, "max_seconds": 5.0}
    throttled = SendResult.transient("HTTP 429", retry_after=3.0)
    assert next_step(throttled, 1, **limits).retry_in == timedelta(seconds=3)
    # Beyond our own longest delay too: the provider said so.
    assert next_step(
        SendResult.transient("HTTP 429", retry_after=60.0), 1, **limits
    ).retry_in == timedelta(seconds=60)
    # A shorter Retry-After than our backoff does not shorten it.
    assert next_step(
        SendResult.transient("HTTP 503", retry_after=0.0), 3, **limits
    ).retry_in == timedelta(seconds=0.8)


def test_smtp_4xx_is_transient_and_5xx_permanent() -> None:
    assert classify_smtp(421, "try later").outcome == "transient"
    assert classify_smtp(450, "mailbox busy").outcome == "transient"
    assert classify_smtp(550, "no such user").outcome == "permanent"
    assert classify_smtp(554, "rejected").outcome == "permanent"


def test_weixin_errcodes() -> None:
    assert classify_errcode(0) == "ok"
    assert classify_errcode(40001) == "token"
    assert classify_errcode(42001) == "token"
    assert classify_errcode(-1) == "transient"
    assert classify_errcode(45009) == "transient"
    assert classify_errcode(40003) == "permanent"


def test_each_weixin_api_names_its_own_refusals() -> None:
    """43101 from subscribe messages, 43004 from template messages, 84061 from customer
    contact: the person takes no messages there. Elsewhere the same code is no refusal."""
    assert classify_errcode(43101, SUBSCRIBE_REFUSALS) == "refused"
    assert classify_errcode(43004, TEMPLATE_REFUSALS) == "refused"
    assert classify_errcode(84061, CONTACT_REFUSALS) == "refused"
    assert classify_errcode(43101, TEMPLATE_REFUSALS) == "permanent"
    assert classify_errcode(47003, SUBSCRIBE_REFUSALS) == "permanent"
    assert classify_errcode(45009, SUBSCRIBE_REFUSALS) == "transient"
    assert classify_errcode(42001, SUBSCRIBE_REFUSALS) == "token"


def test_a_refusal_suppresses_at_once_and_is_not_dead_lettered() -> None:
    step = next_step(
        SendResult.refused("errcode 43101"), 1, max_attempts=5, base_seconds=1, max_seconds=9
    )
    assert (step.status, step.retry_in, step.dead_letter) == ("suppressed", None, False)


def test_fcm_data_carries_only_strings() -> None:
    message = fcm_message(MESSAGE, "device-token")["message"]
    assert message["token"] == "device-token"
    assert message["notification"] == {"title": "Hi", "body": "Hello"}
    assert message["data"] == {"badge": "1", "link": "app://x", "idempotency_key": "jrn:v1:n:p:1"}


def test_transient_errors_back_off_exponentially_until_the_limit() -> None:
    transient = SendResult.transient("HTTP 503")
    limits: dict[str, Any] = {"max_attempts": 3, "base_seconds": 2.0, "max_seconds": 5.0}
    first = next_step(transient, 1, **limits)
    assert (first.status, first.retry_in) == ("pending", timedelta(seconds=2))
    assert next_step(transient, 2, **limits).retry_in == timedelta(seconds=4)
    last = next_step(transient, 3, **limits)
    assert (last.status, last.dead_letter) == ("failed", False)
    assert retry_delay(10, 2.0, 5.0) == timedelta(seconds=5)


def test_permanent_errors_fail_at_once_and_are_dead_lettered() -> None:
    step = next_step(
        SendResult.permanent("HTTP 400"), 1, max_attempts=5, base_seconds=1, max_seconds=9
    )
    assert (step.status, step.dead_letter) == ("failed", True)
    assert (
        next_step(SendResult.sent("id"), 1, max_attempts=5, base_seconds=1, max_seconds=9).status
        == "sent"
    )

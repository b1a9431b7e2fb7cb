"""The one channel interface: a message in, sent / transient failure / permanent failure out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol

import httpx


@dataclass(frozen=True)
class OutgoingMessage:
    """What an adapter needs of a ledger row: the content, the address and the lineage."""

    message_id: str
    idempotency_key: str
    profile_id: str
    channel: str
    recipient: str | None
    subject: str | None
    body: str | None
    payload: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    # The W3C trace context of the message's trace: the provider call is a span in it.
    traceparent: str | None = None
    # The signed one-click unsubscribe URL of a message that belongs to a subscription topic
    # (email carries it as RFC 8058's List-Unsubscribe); None for any other message.
    unsubscribe_url: str | None = None


@dataclass(frozen=True)
class SendResult:
    """`sent` (with the provider's id), or a `transient` / `permanent` failure with the error;
    a transient one may say how long the provider asked us to wait (`Retry-After`). `refused`:
    the person does not take messages on this channel (a WeChat user who unsubscribed or
    unfollowed), which is a consent suppression, never retried."""

    outcome: Literal["sent", "transient", "permanent", "refused"]
    provider_message_id: str | None = None
    error: str | None = None
    retry_after: float | None = None

    @classmethod
    def sent(cls, provider_message_id: str | None) -> SendResult:
        return cls("sent", provider_message_id=provider_message_id)

    @classmethod
    def transient(cls, error: str, retry_after: float | None = None) -> SendResult:
        return cls("transient", error=error[:2000], retry_after=retry_after)

    @classmethod
    def permanent(cls, error: str) -> SendResult:
        return cls("permanent", error=error[:2000])

    @classmethod
    def refused(cls, error: str) -> SendResult:
        return cls("refused", error=error[:2000])


class Channel(Protocol):
    """An adapter to one provider. It never raises for a provider's answer: it classifies it."""

    async def send(self, message: OutgoingMessage) -> SendResult: ...


def classify_http(status: int, detail: str, retry_after: str | None = None) -> SendResult | None:
    """None for a 2xx; 408, 429 and 5xx are transient, with the wait the answer's `Retry-After`
    header asks for (if any); any other status is permanent."""
    if 200 <= status < 300:
        return None
    error = f"HTTP {status}: {detail[:500]}"
    if status in (408, 425, 429) or status >= 500:
        return SendResult.transient(error, retry_after_seconds(retry_after))
    return SendResult.permanent(error)


# A provider asking for more than a day is not taken at its word: our own backoff applies.
_LONGEST_RETRY_AFTER_SECONDS = 86_400.0


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """The seconds a `Retry-After` header asks for (RFC 9110: delay-seconds or an HTTP-date),
    or None when there is none, it cannot be read, or it asks for more than a day."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    return seconds if seconds <= _LONGEST_RETRY_AFTER_SECONDS else None


def transport_failure(error: Exception) -> SendResult:
    """A call that never got an answer (timeout, refused connection) may succeed later."""
    return SendResult.transient(f"{type(error).__name__}: {error}" if str(error) else repr(error))


def require_recipient(message: OutgoingMessage, what: str) -> str | SendResult:
    if not message.recipient:
        return SendResult.permanent(f"the message has no recipient ({what})")
    return message.recipient


def json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}

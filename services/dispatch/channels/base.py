"""The one channel interface: a message in, sent / transient failure / permanent failure out."""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class SendResult:
    """`sent` (with the provider's id), or a `transient` / `permanent` failure with the error."""

    outcome: Literal["sent", "transient", "permanent"]
    provider_message_id: str | None = None
    error: str | None = None

    @classmethod
    def sent(cls, provider_message_id: str | None) -> SendResult:
        return cls("sent", provider_message_id=provider_message_id)

    @classmethod
    def transient(cls, error: str) -> SendResult:
        return cls("transient", error=error[:2000])

    @classmethod
    def permanent(cls, error: str) -> SendResult:
        return cls("permanent", error=error[:2000])


class Channel(Protocol):
    """An adapter to one provider. It never raises for a provider's answer: it classifies it."""

    async def send(self, message: OutgoingMessage) -> SendResult: ...


def classify_http(status: int, detail: str) -> SendResult | None:
    """None for a 2xx; 408, 429 and 5xx are transient; any other status is permanent."""
    if 200 <= status < 300:
        return None
    error = f"HTTP {status}: {detail[:500]}"
    if status in (408, 425, 429) or status >= 500:
        return SendResult.transient(error)
    return SendResult.permanent(error)


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

"""Webhooks: a signed JSON POST, pinned to an address the SSRF check let through."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson

from services.dispatch.addresses import RefusedAddress, WebhookResolver
from services.dispatch.channels.base import (
    OutgoingMessage,
    SendResult,
    classify_http,
    json_or_empty,
    transport_failure,
)
from services.dispatch.channels.config import WebhookConfig

SIGNATURE_HEADER = "X-Closeloop-Signature"
TIMESTAMP_HEADER = "X-Closeloop-Timestamp"


def signature(body: bytes, secret: str) -> str:
    """`sha256=<hex HMAC-SHA256 of the body>`: what a receiver recomputes with its secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_body(message: OutgoingMessage) -> bytes:
    return orjson.dumps(
        {
            "message_id": message.message_id,
            "idempotency_key": message.idempotency_key,
            "profile_id": message.profile_id,
            "channel": message.channel,
            "subject": message.subject,
            "body": message.body,
            "payload": message.payload,
            **message.lineage,
        }
    )


class WebhookChannel:
    def __init__(
        self, config: WebhookConfig, client: httpx.AsyncClient, resolver: WebhookResolver
    ) -> None:
        self._config = config
        self._client = client
        self._resolver = resolver
        self._url = urlsplit(config.url)

    async def send(self, message: OutgoingMessage) -> SendResult:
        host = self._url.hostname or ""
        port = self._url.port or (443 if self._url.scheme == "https" else 80)
        try:
            address = await self._resolver.checked_address(host, port)
        except RefusedAddress as error:
            return SendResult.permanent(str(error))
        body = webhook_body(message)
        # Connect to the address that was checked, not whatever DNS answers a moment later.
        pinned = f"[{address}]" if address.version == 6 else str(address)
        url = urlunsplit(self._url._replace(netloc=f"{pinned}:{port}"))
        headers = {
            "Host": self._url.netloc.rsplit("@", 1)[-1],
            "Content-Type": "application/json",
            "Idempotency-Key": message.idempotency_key,
            SIGNATURE_HEADER: signature(body, self._config.secret),
            TIMESTAMP_HEADER: str(int(time.time())),
        }
        extensions = {"sni_hostname": host} if self._url.scheme == "https" else {}
        try:
            response = await self._client.post(
                url, content=body, headers=headers, extensions=extensions
            )
        except httpx.HTTPError as error:
            return transport_failure(error)
        failure = classify_http(response.status_code, response.text)
        if failure is not None:
            return failure
        provider_id = json_or_empty(response).get("id")
        return SendResult.sent(str(provider_id)[:255] if provider_id is not None else None)

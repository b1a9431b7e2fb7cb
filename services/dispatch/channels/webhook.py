"""Webhooks: a signed JSON POST, pinned to an address the SSRF check let through.

Webhooks go through aiohttp, not httpx: they are the channel that carries volume, and httpx's
pool costs milliseconds of CPU per request past a few connections (docs/dispatch.md).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson
from yarl import URL

from services.dispatch.addresses import IPAddress, RefusedAddress, WebhookResolver
from services.dispatch.channels.base import (
    OutgoingMessage,
    SendResult,
    classify_http,
    transport_failure,
)
from services.dispatch.channels.config import WebhookConfig

SIGNATURE_HEADER = "X-Closeloop-Signature"
TIMESTAMP_HEADER = "X-Closeloop-Timestamp"


def signature(body: bytes, secret: str) -> str:
    """`sha256=<hex HMAC-SHA256 of the body>`: what a receiver recomputes with its secret."""
    return _Signer(secret).sign(body)


class _Signer:
    """Signs bodies with one secret: the key's HMAC state is made once and copied per body,
    which costs less than `hmac.new` each time."""

    def __init__(self, secret: str) -> None:
        self._keyed = hmac.new(secret.encode(), digestmod=hashlib.sha256)

    def sign(self, body: bytes) -> str:
        mac = self._keyed.copy()
        mac.update(body)
        return "sha256=" + mac.hexdigest()


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
        self, config: WebhookConfig, session: aiohttp.ClientSession, resolver: WebhookResolver
    ) -> None:
        self._config = config
        self._session = session
        self._resolver = resolver
        self._url = urlsplit(config.url)
        self._host = self._url.hostname or ""
        self._port = self._url.port or (443 if self._url.scheme == "https" else 80)
        self._host_header = self._url.netloc.rsplit("@", 1)[-1]
        # TLS SNI and certificate checks keep the name while the connection goes to the address.
        self._server_hostname = self._host if self._url.scheme == "https" else None
        self._pinned: tuple[IPAddress, URL] | None = None
        self._signer = _Signer(config.secret)

    async def send(self, message: OutgoingMessage) -> SendResult:
        try:
            address = await self._resolver.checked_address(self._host, self._port)
        except RefusedAddress as error:
            return SendResult.permanent(str(error))
        body = webhook_body(message)
        url = self._pinned_url(address)
        headers = {
            "Host": self._host_header,
            "Content-Type": "application/json",
            "Idempotency-Key": message.idempotency_key,
            SIGNATURE_HEADER: self._signer.sign(body),
            TIMESTAMP_HEADER: str(int(time.time())),
        }
        try:
            async with self._session.post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                server_hostname=self._server_hostname,
            ) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                content = await response.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            return transport_failure(error)
        failure = classify_http(status, content.decode(errors="replace"), retry_after)
        if failure is not None:
            return failure
        provider_id = _provider_id(content)
        return SendResult.sent(str(provider_id)[:255] if provider_id is not None else None)

    def _pinned_url(self, address: IPAddress) -> URL:
        """The URL with the checked address in place of the host (the same one as last time,
        unless DNS moved)."""
        if self._pinned is None or self._pinned[0] != address:
            # Connect to the address that was checked, not whatever DNS answers a moment later.
            host = f"[{address}]" if address.version == 6 else str(address)
            pinned = urlunsplit(self._url._replace(netloc=f"{host}:{self._port}"))
            self._pinned = (address, URL(pinned, encoded=True))
        return self._pinned[1]


def _provider_id(content: bytes) -> object:
    """The `id` of a JSON object answer, if the receiver gave one."""
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    return value.get("id") if isinstance(value, dict) else None

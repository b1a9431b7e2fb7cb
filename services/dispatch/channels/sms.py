"""SMS through Twilio's Messages API shape."""

from __future__ import annotations

import httpx

from services.dispatch.channels.base import (
    OutgoingMessage,
    SendResult,
    classify_http,
    json_or_empty,
    require_recipient,
    transport_failure,
)
from services.dispatch.channels.config import SmsConfig


class SmsChannel:
    def __init__(self, config: SmsConfig, client: httpx.AsyncClient) -> None:
        self._config = config
        self._client = client
        base = config.base_url.rstrip("/")
        self._url = f"{base}/2010-04-01/Accounts/{config.account_sid}/Messages.json"

    async def send(self, message: OutgoingMessage) -> SendResult:
        recipient = require_recipient(message, "a phone number")
        if isinstance(recipient, SendResult):
            return recipient
        form = {"To": recipient, "From": self._config.from_number, "Body": message.body or ""}
        if self._config.status_callback:
            form["StatusCallback"] = self._config.status_callback
        try:
            response = await self._client.post(
                self._url,
                data=form,
                auth=(self._config.account_sid, self._config.auth_token),
                headers={"Idempotency-Key": message.idempotency_key},
            )
        except httpx.HTTPError as error:
            return transport_failure(error)
        failure = classify_http(
            response.status_code, response.text, response.headers.get("Retry-After")
        )
        if failure is not None:
            return failure
        sid = json_or_empty(response).get("sid")
        return SendResult.sent(str(sid)[:255] if sid else None)

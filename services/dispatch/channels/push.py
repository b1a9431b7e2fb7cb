"""App push through FCM's HTTP v1 API shape."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from services.dispatch.channels.base import (
    OutgoingMessage,
    SendResult,
    classify_http,
    json_or_empty,
    require_recipient,
    transport_failure,
)
from services.dispatch.channels.config import PushConfig


def fcm_message(message: OutgoingMessage, token: str) -> dict[str, Any]:
    """FCM's `data` carries only strings: other payload values travel as JSON text."""
    data = {
        key: value if isinstance(value, str) else orjson.dumps(value).decode()
        for key, value in message.payload.items()
    }
    data["idempotency_key"] = message.idempotency_key
    return {
        "message": {
            "token": token,
            "notification": {"title": message.subject or "", "body": message.body or ""},
            "data": data,
        }
    }


class PushChannel:
    def __init__(self, config: PushConfig, client: httpx.AsyncClient) -> None:
        self._config = config
        self._client = client
        base = config.base_url.rstrip("/")
        self._url = f"{base}/v1/projects/{config.project_id}/messages:send"

    async def send(self, message: OutgoingMessage) -> SendResult:
        token = require_recipient(message, "a device token")
        if isinstance(token, SendResult):
            return token
        try:
            response = await self._client.post(
                self._url,
                json=fcm_message(message, token),
                headers={"Authorization": f"Bearer {self._config.access_token}"},
            )
        except httpx.HTTPError as error:
            return transport_failure(error)
        failure = classify_http(
            response.status_code, response.text, response.headers.get("Retry-After")
        )
        if failure is not None:
            return failure
        name = json_or_empty(response).get("name")
        return SendResult.sent(str(name)[:255] if name else None)

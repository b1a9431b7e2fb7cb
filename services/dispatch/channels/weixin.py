"""WeCom application messages and WeChat official-account template messages.

Both fetch an access token first and answer every call with `errcode`: 0 is success, some
codes say the token expired (fetch a new one and try once more), some say try later.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import httpx

from services.dispatch.channels.base import (
    OutgoingMessage,
    SendResult,
    classify_http,
    json_or_empty,
    require_recipient,
    transport_failure,
)
from services.dispatch.channels.config import WechatConfig, WecomConfig

_TOKEN_ERRORS = frozenset({40001, 40014, 42001})
# -1 system busy; 45009 daily quota; 45011 minute quota; 45033 too many concurrent calls.
_TRANSIENT_ERRORS = frozenset({-1, 45009, 45011, 45033})
_TOKEN_MARGIN_SECONDS = 300

ErrcodeClass = Literal["ok", "token", "transient", "permanent"]


def classify_errcode(errcode: int) -> ErrcodeClass:
    if errcode == 0:
        return "ok"
    if errcode in _TOKEN_ERRORS:
        return "token"
    if errcode in _TRANSIENT_ERRORS:
        return "transient"
    return "permanent"


class _ProviderError(Exception):
    def __init__(self, result: SendResult) -> None:
        super().__init__(result.error)
        self.result = result


class AccessToken:
    """An access token fetched once and shared until shortly before it expires."""

    def __init__(self, fetch: Callable[[], Awaitable[tuple[str, float]]]) -> None:
        self._fetch = fetch
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        async with self._lock:
            if self._token is None or time.monotonic() >= self._expires:
                token, lifetime = await self._fetch()
                self._token = token
                self._expires = time.monotonic() + max(0.0, lifetime - _TOKEN_MARGIN_SECONDS)
            return self._token

    def invalidate(self, token: str) -> None:
        if self._token == token:
            self._token = None


async def _call_json(
    client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
) -> dict[str, Any]:
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.HTTPError as error:
        raise _ProviderError(transport_failure(error)) from None
    failure = classify_http(
        response.status_code, response.text, response.headers.get("Retry-After")
    )
    if failure is not None:
        raise _ProviderError(failure)
    return json_or_empty(response)


def _errcode(answer: dict[str, Any]) -> int:
    code = answer.get("errcode", 0)
    return code if isinstance(code, int) else -1


def _errcode_failure(answer: dict[str, Any], kind: ErrcodeClass) -> SendResult:
    error = f"errcode {answer.get('errcode')}: {answer.get('errmsg', '')}"
    return (
        SendResult.transient(error)
        if kind in ("transient", "token")
        else SendResult.permanent(error)
    )


class _TokenChannel:
    """Send with the cached token; on a token error, fetch a new one and send once more."""

    def __init__(self, client: httpx.AsyncClient, token_url: str, token_params: dict[str, str]):
        self._client = client
        self._token_url = token_url
        self._token_params = token_params
        self._token = AccessToken(self._fetch_token)

    async def _fetch_token(self) -> tuple[str, float]:
        answer = await _call_json(self._client, "GET", self._token_url, params=self._token_params)
        kind = classify_errcode(_errcode(answer))
        token = answer.get("access_token")
        if kind != "ok" or not isinstance(token, str):
            # Wrong credentials do not fix themselves; a busy provider does.
            failure = _errcode_failure(answer, "transient" if kind == "transient" else "permanent")
            raise _ProviderError(failure)
        expires = answer.get("expires_in", 7200)
        return token, float(expires) if isinstance(expires, int | float) else 7200.0

    async def _send_with_token(self, url: str, body: dict[str, Any]) -> SendResult:
        try:
            for attempt in (1, 2):
                token = await self._token.get()
                answer = await _call_json(
                    self._client, "POST", url, params={"access_token": token}, json=body
                )
                kind = classify_errcode(_errcode(answer))
                if kind == "ok":
                    msgid = answer.get("msgid")
                    return SendResult.sent(str(msgid)[:255] if msgid is not None else None)
                if kind == "token" and attempt == 1:
                    self._token.invalidate(token)
                    continue
                return _errcode_failure(answer, kind)
        except _ProviderError as error:
            return error.result
        raise AssertionError("unreachable: the second attempt always returns")


class WecomChannel(_TokenChannel):
    def __init__(self, config: WecomConfig, client: httpx.AsyncClient) -> None:
        base = config.base_url.rstrip("/")
        super().__init__(
            client,
            f"{base}/cgi-bin/gettoken",
            {"corpid": config.corp_id, "corpsecret": config.corp_secret},
        )
        self._config = config
        self._send_url = f"{base}/cgi-bin/message/send"

    async def send(self, message: OutgoingMessage) -> SendResult:
        user = require_recipient(message, "a WeCom user id")
        if isinstance(user, SendResult):
            return user
        body = {
            "touser": user,
            "msgtype": "text",
            "agentid": self._config.agent_id,
            "text": {"content": message.body or ""},
            # WeCom's own duplicate check: the same content to the same user within the
            # interval is dropped, which covers a resend after a crash.
            "enable_duplicate_check": 1,
            "duplicate_check_interval": 1800,
        }
        return await self._send_with_token(self._send_url, body)


class WechatChannel(_TokenChannel):
    def __init__(self, config: WechatConfig, client: httpx.AsyncClient) -> None:
        base = config.base_url.rstrip("/")
        super().__init__(
            client,
            f"{base}/cgi-bin/token",
            {
                "grant_type": "client_credential",
                "appid": config.app_id,
                "secret": config.app_secret,
            },
        )
        self._config = config
        self._send_url = f"{base}/cgi-bin/message/template/send"

    async def send(self, message: OutgoingMessage) -> SendResult:
        openid = require_recipient(message, "a WeChat openid")
        if isinstance(openid, SendResult):
            return openid
        template_id = message.payload.get("template_id") or self._config.template_id
        if not isinstance(template_id, str) or not template_id:
            return SendResult.permanent("no WeChat template_id in the payload or the channel")
        data = message.payload.get("data")
        if not isinstance(data, dict):
            data = {
                "first": {"value": message.subject or ""},
                "remark": {"value": message.body or ""},
            }
        body: dict[str, Any] = {"touser": openid, "template_id": template_id, "data": data}
        if isinstance(message.payload.get("url"), str):
            body["url"] = message.payload["url"]
        return await self._send_with_token(self._send_url, body)

"""WeCom application and customer-contact messages, WeChat official-account template messages
and mini-program subscribe messages.

All fetch an access token first and answer every call with `errcode`: 0 is success, some codes
say the token expired (invalidate it for every replica, fetch a new one and try once more),
some say try later, some that the person takes no messages here (a consent suppression), the
rest that the message is wrong. The token is shared by the replicas (services/dispatch/tokens).
"""

from __future__ import annotations

from collections.abc import Collection
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
from services.dispatch.channels.config import (
    WechatConfig,
    WechatMiniProgramConfig,
    WecomConfig,
    WecomContactConfig,
)
from services.dispatch.tokens import AccessTokens, SharedAccessToken, credential_key

# 40001 invalid credential; 40014 invalid access_token; 42001 access_token expired.
_TOKEN_ERRORS = frozenset({40001, 40014, 42001})
# -1 system busy; 45009 daily quota; 45011 minute quota; 45033 too many concurrent calls.
_TRANSIENT_ERRORS = frozenset({-1, 45009, 45011, 45033})
# 43004: the user does not follow the official account (template messages).
TEMPLATE_REFUSALS = frozenset({43004})
# 43101: the user refused the subscribe message, or cancelled the subscription.
SUBSCRIBE_REFUSALS = frozenset({43101})
# 84061: the customer is no longer the sender's contact.
CONTACT_REFUSALS = frozenset({84061})

ErrcodeClass = Literal["ok", "token", "transient", "refused", "permanent"]


def classify_errcode(errcode: int, refusals: Collection[int] = ()) -> ErrcodeClass:
    """What an answer's errcode means; `refusals` are the API's codes for a person who takes
    no messages from it."""
    if errcode == 0:
        return "ok"
    if errcode in _TOKEN_ERRORS:
        return "token"
    if errcode in _TRANSIENT_ERRORS:
        return "transient"
    if errcode in refusals:
        return "refused"
    return "permanent"


class _ProviderError(Exception):
    def __init__(self, result: SendResult) -> None:
        super().__init__(result.error)
        self.result = result


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
    if kind in ("transient", "token"):
        return SendResult.transient(error)
    if kind == "refused":
        return SendResult.refused(error)
    return SendResult.permanent(error)


class _TokenChannel:
    """Send with the shared token; on a token error, invalidate it, fetch a new one and send
    once more. `_refusals` are the API's errcodes for a person who takes no messages."""

    _refusals: frozenset[int] = frozenset()

    def __init__(
        self,
        client: httpx.AsyncClient,
        tokens: AccessTokens,
        credential: str,
        token_url: str,
        token_params: dict[str, str],
    ):
        self._client = client
        self._token_url = token_url
        self._token_params = token_params
        self._token: SharedAccessToken = tokens.token(credential, self._fetch_token)

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

    async def _post_with_token(
        self, url: str, body: dict[str, Any]
    ) -> tuple[dict[str, Any], ErrcodeClass]:
        """The provider's answer and what its errcode means, the token renewed once if refused."""
        for attempt in (1, 2):
            token = await self._token.get()
            answer = await _call_json(
                self._client, "POST", url, params={"access_token": token}, json=body
            )
            kind = classify_errcode(_errcode(answer), self._refusals)
            if kind == "token" and attempt == 1:
                await self._token.invalidate(token)
                continue
            return answer, kind
        raise AssertionError("unreachable: the second attempt always returns")

    async def _send_with_token(self, url: str, body: dict[str, Any]) -> SendResult:
        try:
            answer, kind = await self._post_with_token(url, body)
        except _ProviderError as error:
            return error.result
        if kind != "ok":
            return _errcode_failure(answer, kind)
        msgid = answer.get("msgid")
        return SendResult.sent(str(msgid)[:255] if msgid is not None else None)


def _wecom_token(
    config: WecomConfig | WecomContactConfig, client: httpx.AsyncClient, tokens: AccessTokens
) -> tuple[httpx.AsyncClient, AccessTokens, str, str, dict[str, str]]:
    base = config.base_url.rstrip("/")
    return (
        client,
        tokens,
        credential_key("wecom", config.corp_id, config.corp_secret, base),
        f"{base}/cgi-bin/gettoken",
        {"corpid": config.corp_id, "corpsecret": config.corp_secret},
    )


def _wechat_token(
    config: WechatConfig | WechatMiniProgramConfig,
    client: httpx.AsyncClient,
    tokens: AccessTokens,
) -> tuple[httpx.AsyncClient, AccessTokens, str, str, dict[str, str]]:
    base = config.base_url.rstrip("/")
    return (
        client,
        tokens,
        credential_key("wechat", config.app_id, config.app_secret, base),
        f"{base}/cgi-bin/token",
        {"grant_type": "client_credential", "appid": config.app_id, "secret": config.app_secret},
    )


class WecomChannel(_TokenChannel):
    """WeCom application messages to the company's own members (`message/send`)."""

    def __init__(
        self, config: WecomConfig, client: httpx.AsyncClient, tokens: AccessTokens
    ) -> None:
        super().__init__(*_wecom_token(config, client, tokens))
        self._config = config
        self._send_url = f"{config.base_url.rstrip('/')}/cgi-bin/message/send"

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


class WecomContactChannel(_TokenChannel):
    """WeCom customer-contact messages (`externalcontact/add_msg_template`) to a customer, an
    external contact of the company's members.

    WeCom makes a group-send task of the call, which the sending member confirms in their
    WeCom before the customer receives it; so `sent` means WeCom took the task (its `msgid`).
    A customer WeCom cannot send to is named in the answer's `fail_list`: no longer the
    member's contact, or over the number of such messages a customer takes a month.
    """

    _refusals = CONTACT_REFUSALS

    def __init__(
        self, config: WecomContactConfig, client: httpx.AsyncClient, tokens: AccessTokens
    ) -> None:
        super().__init__(*_wecom_token(config, client, tokens))
        self._config = config
        self._send_url = f"{config.base_url.rstrip('/')}/cgi-bin/externalcontact/add_msg_template"

    async def send(self, message: OutgoingMessage) -> SendResult:
        customer = require_recipient(message, "a WeCom external_userid")
        if isinstance(customer, SendResult):
            return customer
        body: dict[str, Any] = {
            "chat_type": "single",
            "external_userid": [customer],
            "text": {"content": _contact_text(message)},
        }
        if self._config.sender:
            body["sender"] = self._config.sender
        url = message.payload.get("url")
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            title = (message.subject or url)[:128]
            body["attachments"] = [{"msgtype": "link", "link": {"title": title, "url": url}}]
        try:
            answer, kind = await self._post_with_token(self._send_url, body)
        except _ProviderError as error:
            return error.result
        if kind != "ok":
            return _errcode_failure(answer, kind)
        failed = answer.get("fail_list")
        if isinstance(failed, list) and customer in failed:
            return SendResult.refused(
                "WeCom cannot send to this customer (fail_list): not the member's contact, or "
                "the customer's monthly limit of messages is reached"
            )
        msgid = answer.get("msgid")
        return SendResult.sent(str(msgid)[:255] if msgid is not None else None)


def _contact_text(message: OutgoingMessage) -> str:
    parts = [part for part in (message.subject, message.body) if part]
    return "\n".join(parts)[:4000]


class WechatChannel(_TokenChannel):
    """WeChat official-account template messages (`message/template/send`) to a follower."""

    _refusals = TEMPLATE_REFUSALS

    def __init__(
        self, config: WechatConfig, client: httpx.AsyncClient, tokens: AccessTokens
    ) -> None:
        super().__init__(*_wechat_token(config, client, tokens))
        self._config = config
        self._send_url = f"{config.base_url.rstrip('/')}/cgi-bin/message/template/send"

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


class WechatMiniProgramChannel(_TokenChannel):
    """Mini-program subscribe messages (`message/subscribe/send`) to a user who subscribed to
    the template in the mini-program. The message's `data` is the template's
    `{key: {"value": ...}}`; its `url`, when not a web address, is the mini-program page the
    message opens (`page`), else the channel's `page`."""

    _refusals = SUBSCRIBE_REFUSALS

    def __init__(
        self, config: WechatMiniProgramConfig, client: httpx.AsyncClient, tokens: AccessTokens
    ) -> None:
        super().__init__(*_wechat_token(config, client, tokens))
        self._config = config
        self._send_url = f"{config.base_url.rstrip('/')}/cgi-bin/message/subscribe/send"

    async def send(self, message: OutgoingMessage) -> SendResult:
        openid = require_recipient(message, "a mini-program openid")
        if isinstance(openid, SendResult):
            return openid
        template_id = message.payload.get("template_id") or self._config.template_id
        if not isinstance(template_id, str) or not template_id:
            return SendResult.permanent("no subscribe template_id in the payload or the channel")
        data = message.payload.get("data")
        if not isinstance(data, dict) or not data:
            return SendResult.permanent("a subscribe message needs the template's data")
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            "data": data,
            "miniprogram_state": self._config.miniprogram_state,
            "lang": self._config.lang,
        }
        page = _page(message.payload.get("url")) or self._config.page
        if page:
            body["page"] = page
        return await self._send_with_token(self._send_url, body)


def _page(url: object) -> str | None:
    """A mini-program page path (`pages/order/detail?id=7`), not a web address."""
    if not isinstance(url, str) or not url.strip():
        return None
    if url.lower().startswith(("http://", "https://")):
        return None
    return url.strip()

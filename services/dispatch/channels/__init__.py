"""Channel adapters behind one interface, built from a channel's stored configuration."""

from __future__ import annotations

from typing import Any

import aiohttp
import httpx
from opentelemetry.trace import Status, StatusCode
from pydantic import BaseModel

from libs.common.tracing import provider_call, tracing_on
from services.dispatch.addresses import WebhookResolver
from services.dispatch.channels.base import Channel, OutgoingMessage, SendResult
from services.dispatch.channels.config import (
    EmailConfig,
    PushConfig,
    SmsConfig,
    WebhookConfig,
    WechatConfig,
    WechatMiniProgramConfig,
    WecomConfig,
    WecomContactConfig,
    parse_config,
)
from services.dispatch.channels.email import EmailChannel
from services.dispatch.channels.push import PushChannel
from services.dispatch.channels.sms import SmsChannel
from services.dispatch.channels.webhook import WebhookChannel
from services.dispatch.channels.weixin import (
    WechatChannel,
    WechatMiniProgramChannel,
    WecomChannel,
    WecomContactChannel,
)
from services.dispatch.tokens import AccessTokens

__all__ = ["Channel", "OutgoingMessage", "SendResult", "build_channel"]


def build_channel(
    kind: str,
    values: dict[str, Any],
    *,
    client: httpx.AsyncClient,
    session: aiohttp.ClientSession,
    resolver: WebhookResolver,
    timeout: float,
    tokens: AccessTokens,
) -> Channel:
    """The adapter for a stored channel (its config and secrets merged into `values`).

    Webhooks use the aiohttp `session`; the other HTTP providers the httpx `client`; WeChat and
    WeCom the access tokens the replicas share (`tokens`).
    """
    config = parse_config(kind, values)
    adapter = _adapter(kind, config, client, session, resolver, timeout, tokens)
    return TracedChannel(adapter, kind) if tracing_on() else adapter


class TracedChannel:
    """An adapter whose every provider call is a span in the trace of the message it sends."""

    def __init__(self, adapter: Channel, kind: str) -> None:
        self._adapter = adapter
        self._kind = kind

    async def send(self, message: OutgoingMessage) -> SendResult:
        with provider_call(self._kind, message.traceparent) as span:
            result = await self._adapter.send(message)
            if span is not None:
                span.set_attribute("closeloop.message_id", message.message_id)
                span.set_attribute("closeloop.send_outcome", result.outcome)
                if result.outcome != "sent":
                    span.set_status(Status(StatusCode.ERROR, result.error))
            return result


def _adapter(
    kind: str,
    config: BaseModel,
    client: httpx.AsyncClient,
    session: aiohttp.ClientSession,
    resolver: WebhookResolver,
    timeout: float,
    tokens: AccessTokens,
) -> Channel:
    if isinstance(config, EmailConfig):
        return EmailChannel(config, timeout)
    if isinstance(config, WebhookConfig):
        return WebhookChannel(config, session, resolver)
    if isinstance(config, SmsConfig):
        return SmsChannel(config, client)
    if isinstance(config, PushConfig):
        return PushChannel(config, client)
    if isinstance(config, WecomConfig):
        return WecomChannel(config, client, tokens)
    if isinstance(config, WecomContactConfig):
        return WecomContactChannel(config, client, tokens)
    if isinstance(config, WechatConfig):
        return WechatChannel(config, client, tokens)
    if isinstance(config, WechatMiniProgramConfig):
        return WechatMiniProgramChannel(config, client, tokens)
    raise ValueError(f"no adapter for channel kind {kind!r}")

"""The public endpoints recipients and providers reach: clicks, opens, unsubscribes, receipts.

No admin token: each acts only on a token dispatch can verify or a provider id it knows.
"""

from __future__ import annotations

import base64
import html
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from libs.common.api import RelayDep, StoreTransactions, from_state, transactions_of
from libs.common.bus import OutboxRelay, write_outbox
from libs.common.errors import ApiError, error_responses
from libs.common.events import (
    Event,
    MessageClicked,
    MessageDelivered,
    MessageFailed,
    MessageOpened,
    MessageUnsubscribed,
)
from libs.common.tracking import InvalidToken, TrackingAction, TrackingToken, verify
from services.dispatch.outcomes import outcome
from services.dispatch.schemas import CHANNEL_PATTERN
from services.dispatch.settings import DispatchSettings
from services.dispatch.store import DispatchStore, LedgerRow

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_MAX_RECEIPT_BYTES = 65_536
_DELIVERED = frozenset({"delivered", "read"})
_FAILED = frozenset({"failed", "undelivered", "bounced", "rejected"})
ChannelPath = Annotated[str, Path(pattern=CHANNEL_PATTERN)]
TokenPath = Annotated[str, Path(max_length=8192)]
# Declared by hand: as a response_class, HTMLResponse would declare the JSON errors as HTML too.
_UNSUBSCRIBED: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "Done."}
}


# 404: a token that does not verify or names no message; 422: a path that fails validation.
router = APIRouter(tags=["tracking"], responses=error_responses(404, 422))
Stores = Annotated[StoreTransactions[DispatchStore], Depends(transactions_of(DispatchStore))]
SettingsDep = Annotated[DispatchSettings, Depends(from_state("settings", DispatchSettings))]


async def _emit(store: DispatchStore, *events: Event[Any]) -> None:
    await write_outbox(store.session, store.schema, list(events))


async def _tracked(
    store: DispatchStore, settings: DispatchSettings, token: str, action: TrackingAction
) -> tuple[TrackingToken, LedgerRow]:
    parsed = _verified(token, action, settings.tracking_secret.get_secret_value())
    row = await store.send_by_key(parsed.idempotency_key)
    if row is None:
        raise ApiError(404, "message_not_found", "This link's message is not known here.")
    return parsed, row


@router.get(
    "/c/{token}",
    status_code=302,
    response_class=RedirectResponse,
    responses=error_responses(400),
)
async def click(
    token: TokenPath, stores: Stores, settings: SettingsDep, relay: RelayDep
) -> RedirectResponse:
    """Record the click (message.clicked) and redirect to the URL the token was signed for."""
    async with stores() as store:
        parsed, row = await _tracked(store, settings, token, "click")
        url = parsed.url or ""
        if urlsplit(url).scheme not in ("http", "https"):
            raise ApiError(400, "invalid_link", "This link does not lead to a web page.")
        try:
            clicked = outcome(MessageClicked, row, datetime.now(UTC), url=url)
        except ValidationError:
            raise ApiError(400, "invalid_link", "This link's URL is not valid.") from None
        await _emit(store, clicked)
    relay.notify()
    return RedirectResponse(url, status_code=302)


@router.get(
    "/o/{token}",
    response_class=Response,
    responses={200: {"content": {"image/gif": {}}, "description": "A 1x1 GIF."}},
)
async def open_pixel(
    token: TokenPath, stores: Stores, settings: SettingsDep, relay: RelayDep
) -> Response:
    """Record the open (message.opened); answer a 1x1 transparent GIF."""
    async with stores() as store:
        _, row = await _tracked(store, settings, token, "open")
        await _emit(store, outcome(MessageOpened, row, datetime.now(UTC)))
    relay.notify()
    return Response(PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store"})


async def _unsubscribe(
    token: str,
    stores: StoreTransactions[DispatchStore],
    settings: DispatchSettings,
    relay: OutboxRelay,
) -> HTMLResponse:
    async with stores() as store:
        _, row = await _tracked(store, settings, token, "unsubscribe")
        await store.add_unsubscribe(row.profile_id, row.channel)
        if await store.mark_unsubscribed(row.message_id):
            await _emit(store, outcome(MessageUnsubscribed, row, datetime.now(UTC)))
    relay.notify()
    return HTMLResponse(_UNSUBSCRIBED_PAGE.format(channel=html.escape(row.channel)))


@router.get("/u/{token}", response_class=Response, responses=_UNSUBSCRIBED)
async def unsubscribe_link(
    token: TokenPath, stores: Stores, settings: SettingsDep, relay: RelayDep
) -> HTMLResponse:
    """Unsubscribe the profile from the message's channel (message.unsubscribed, once)."""
    return await _unsubscribe(token, stores, settings, relay)


@router.post("/u/{token}", response_class=Response, responses=_UNSUBSCRIBED)
async def unsubscribe_post(
    token: TokenPath, stores: Stores, settings: SettingsDep, relay: RelayDep
) -> HTMLResponse:
    """The same, for mail clients' one-click unsubscribe (RFC 8058)."""
    return await _unsubscribe(token, stores, settings, relay)


@router.post("/receipts/{channel}", responses=error_responses(413))
async def receipt(
    channel: ChannelPath, request: Request, stores: Stores, relay: RelayDep
) -> dict[str, str]:
    """A provider's delivery receipt: Twilio's status callback form, or JSON
    `{"provider_message_id", "status", "error"?}`; delivered or failed become outcomes."""
    provider_id, status, error = _receipt(await _body(request), request)
    delivered = status in _DELIVERED
    if not delivered and status not in _FAILED:
        return {"status": "ignored"}
    async with stores() as store:
        row = await store.send_by_provider_id(channel, provider_id)
        if row is None:
            raise ApiError(404, "message_not_found", "No message of this channel has this id.")
        new_status = "delivered" if delivered else "failed"
        if not await store.mark_receipt(row.message_id, new_status, error):
            return {"status": "duplicate"}
        now = datetime.now(UTC)
        event = (
            outcome(MessageDelivered, row, now)
            if delivered
            else outcome(
                MessageFailed, row, now, error=error or f"provider: {status}", retryable=False
            )
        )
        await _emit(store, event)
    relay.notify()
    return {"status": new_status}


def _verified(token: str, action: TrackingAction, secret: str) -> TrackingToken:
    try:
        parsed = verify(token, secret)
    except (InvalidToken, ValueError):
        raise ApiError(404, "invalid_token", "This link is not valid.") from None
    if parsed.action != action:
        raise ApiError(404, "invalid_token", "This link is not valid here.")
    return parsed


async def _body(request: Request) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_RECEIPT_BYTES:
            raise ApiError(413, "receipt_too_large", "A receipt is at most 64 KiB.")
    return body


def _receipt(body: bytes, request: Request) -> tuple[str, str, str | None]:
    """(provider message id, status in lower case, error) from a form or a JSON receipt."""
    content_type = request.headers.get("content-type", "")
    fields: dict[str, Any]
    if content_type.startswith("application/x-www-form-urlencoded"):
        fields = dict(parse_qsl(body.decode("utf-8", "replace")))
        provider_id = fields.get("MessageSid") or fields.get("SmsSid")
        status = fields.get("MessageStatus") or fields.get("SmsStatus")
        error = fields.get("ErrorCode")
        error = f"provider error code {error}" if error else None
    else:
        try:
            loaded = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ApiError(
                422, "invalid_receipt", "A receipt is a form or a JSON object."
            ) from None
        fields = loaded if isinstance(loaded, dict) else {}
        provider_id = fields.get("provider_message_id")
        status = fields.get("status")
        error = fields.get("error") if isinstance(fields.get("error"), str) else None
    if not isinstance(provider_id, str) or not 0 < len(provider_id) <= 255 or "\x00" in provider_id:
        raise ApiError(
            422, "invalid_receipt", "The receipt names no message id.", "provider_message_id"
        )
    if not isinstance(status, str) or not status:
        raise ApiError(422, "invalid_receipt", "The receipt has no status.", "status")
    return provider_id, status.lower(), error[:2000].replace("\x00", "") if error else None


_UNSUBSCRIBED_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Unsubscribed</title></head>
<body><h1>You are unsubscribed</h1>
<p>You will not receive these {channel} messages any more.</p></body></html>
"""

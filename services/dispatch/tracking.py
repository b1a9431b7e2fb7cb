"""The public endpoints recipients and providers reach: clicks, opens, unsubscribes, the
preference page, receipts.

No admin token: each acts only on a token dispatch can verify or a provider id it knows.
"""

from __future__ import annotations

import base64
import html
from datetime import UTC, datetime, timedelta
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
from services.dispatch.subscriptions import (
    InvalidAnswers,
    InvalidPreferenceLink,
    answers_from_form,
    preference_page,
    sign_preference_link,
    verify_preference_link,
)

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_MAX_RECEIPT_BYTES = 65_536
_DELIVERED = frozenset({"delivered", "read"})
_FAILED = frozenset({"failed", "undelivered", "bounced", "rejected"})
_MAX_FORM_BYTES = 65_536
ChannelPath = Annotated[str, Path(pattern=CHANNEL_PATTERN)]
TokenPath = Annotated[str, Path(max_length=8192)]
# Declared by hand: as a response_class, HTMLResponse would declare the JSON errors as HTML too.
_UNSUBSCRIBED: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "Done."}
}
_UNSUBSCRIBE_ASKED: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "The question."}
}
_PAGE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "The page."},
    **error_responses(403, 413),
}
# The page changes subscriptions: nobody may frame it, it loads nothing, it leaks no link.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
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
    """A message of a subscription topic unsubscribes from that topic on its channel; any other
    message, from its channel."""
    async with stores() as store:
        _, row = await _tracked(store, settings, token, "unsubscribe")
        topic_id = row.subscription_topic
        if topic_id is not None:
            await store.save_topic_answers(row.profile_id, {topic_id: {row.channel: False}})
        else:
            await store.add_unsubscribe(row.profile_id, row.channel)
        if await store.mark_unsubscribed(row.message_id):
            unsubscribed = outcome(
                MessageUnsubscribed, row, datetime.now(UTC), subscription_topic=topic_id
            )
            await _emit(store, unsubscribed)
        what = await _unsubscribed_from(store, row)
    relay.notify()
    return _unsubscribe_page(_UNSUBSCRIBED_PAGE, what, settings, row.profile_id)


async def _unsubscribed_from(store: DispatchStore, row: LedgerRow) -> str:
    """What the link unsubscribes from, in the recipient's words: the topic by its name on the
    message's channel, or the channel."""
    topic_id = row.subscription_topic
    if topic_id is None:
        return f"{row.channel} messages"
    topic = await store.topic(topic_id)
    return f"{topic.topic.name if topic else topic_id} messages by {row.channel}"


def _unsubscribe_page(
    page: str, what: str, settings: DispatchSettings, profile_id: str
) -> HTMLResponse:
    body = page.format(what=html.escape(what), manage=_manage_link(settings, profile_id))
    return HTMLResponse(body, headers=_PAGE_HEADERS)


def _manage_link(settings: DispatchSettings, profile_id: str) -> str:
    """A link to the person's preference page, for the confirmation page."""
    expires_at = datetime.now(UTC) + timedelta(days=settings.dispatch_preference_link_days)
    link = preference_url(settings, profile_id, expires_at)
    if link is None:
        return ""
    return f'<p><a href="{html.escape(link, quote=True)}">Choose what you receive</a></p>'


def preference_url(settings: DispatchSettings, profile_id: str, expires_at: datetime) -> str | None:
    """The signed link to the person's preference page; None without a tracking secret."""
    secret = settings.tracking_secret.get_secret_value()
    if not secret:
        return None
    token = sign_preference_link(profile_id, expires_at, secret)
    return f"{settings.tracking_base_url.rstrip('/')}/p/{token}"


@router.get("/u/{token}", response_class=Response, responses=_UNSUBSCRIBE_ASKED)
async def unsubscribe_asked(
    token: TokenPath, stores: Stores, settings: SettingsDep
) -> HTMLResponse:
    """Ask before unsubscribing: a page saying what the link unsubscribes from, with a form that
    posts back to this URL. A GET changes nothing, so the mail scanners that follow every link
    of a message unsubscribe nobody."""
    async with stores() as store:
        _, row = await _tracked(store, settings, token, "unsubscribe")
        what = await _unsubscribed_from(store, row)
    return _unsubscribe_page(_UNSUBSCRIBE_QUESTION_PAGE, what, settings, row.profile_id)


@router.post("/u/{token}", response_class=Response, responses=_UNSUBSCRIBED)
async def unsubscribe_post(
    token: TokenPath, stores: Stores, settings: SettingsDep, relay: RelayDep
) -> HTMLResponse:
    """Unsubscribe the profile from the message's topic on its channel, or from the channel
    (message.unsubscribed, once): the confirmation page's form, and mail clients' one-click
    unsubscribe (RFC 8058), which asks nothing more."""
    return await _unsubscribe(token, stores, settings, relay)


@router.get("/p/{token}", response_class=Response, responses=_PAGE)
async def preference_page_shown(
    token: TokenPath, stores: Stores, settings: SettingsDep
) -> HTMLResponse:
    """The person's preference page: their topics per channel, ticked where subscribed."""
    profile_id = _preference_profile(token, settings)
    async with stores() as store:
        topics = [row.topic for row in await store.topics()]
        answers = await _topic_answers(store, profile_id)
    return HTMLResponse(preference_page(topics, answers), headers=_PAGE_HEADERS)


@router.post("/p/{token}", response_class=Response, responses=_PAGE)
async def preference_page_saved(
    token: TokenPath, request: Request, stores: Stores, settings: SettingsDep
) -> HTMLResponse:
    """The page's form: each topic it showed, subscribed on the channels ticked, not on the
    others. A bad or expired link is 403 and changes nothing."""
    profile_id = _preference_profile(token, settings)
    fields = parse_qsl(
        _form_text(await _body(request, _MAX_FORM_BYTES, "form")), keep_blank_values=True
    )
    async with stores() as store:
        topics = [row.topic for row in await store.topics()]
        try:
            answers = answers_from_form(fields, topics)
        except InvalidAnswers as error:
            raise ApiError(422, "invalid_answers", str(error), error.field) from None
        await store.save_topic_answers(profile_id, answers)
        recorded = await _topic_answers(store, profile_id)
    return HTMLResponse(preference_page(topics, recorded, saved=True), headers=_PAGE_HEADERS)


def _preference_profile(token: str, settings: DispatchSettings) -> str:
    try:
        return verify_preference_link(
            token, settings.tracking_secret.get_secret_value(), datetime.now(UTC)
        )
    except (InvalidPreferenceLink, ValueError) as error:
        code = error.code if isinstance(error, InvalidPreferenceLink) else "invalid_link"
        raise ApiError(
            403, code, str(error) if code == "link_expired" else "This link is not valid."
        ) from None


async def _topic_answers(store: DispatchStore, profile_id: str) -> dict[str, dict[str, bool]]:
    preferences = (await store.preferences([profile_id])).get(profile_id)
    return {} if preferences is None else {t: dict(a) for t, a in preferences.topics.items()}


def _form_text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(422, "invalid_answers", "The form is not UTF-8.") from None


@router.post("/receipts/{channel}", responses=error_responses(413))
async def receipt(
    channel: ChannelPath, request: Request, stores: Stores, relay: RelayDep
) -> dict[str, str]:
    """A provider's delivery receipt: Twilio's status callback form, or JSON
    `{"provider_message_id", "status", "error"?}`; delivered or failed become outcomes."""
    provider_id, status, error = _receipt(
        await _body(request, _MAX_RECEIPT_BYTES, "receipt"), request
    )
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


async def _body(request: Request, limit: int, what: str) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, f"{what}_too_large", f"A {what} is at most {limit // 1024} KiB.")
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


_UNSUBSCRIBE_QUESTION_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Unsubscribe</title></head>
<body><h1>Unsubscribe?</h1>
<p>Stop receiving {what}?</p>
<form method="post"><p><button type="submit">Unsubscribe</button></p></form>{manage}</body></html>
"""
_UNSUBSCRIBED_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Unsubscribed</title></head>
<body><h1>You are unsubscribed</h1>
<p>You will not receive these {what} any more.</p>{manage}</body></html>
"""

"""WeChat official accounts: their callback settings (admin) and the callback URL WeChat calls.

`GET /wechat/{app_id}/callback` answers WeChat's server verification (its `echostr`); `POST`
takes the events and messages it pushes, signed (and, in the encrypted mode, encrypted), and
publishes each as an identify and a track of the person's OpenID. A callback that is not
WeChat's (wrong signature, a timestamp outside the replay window, a (timestamp, nonce) seen
before) is refused with 401 and nothing is published.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import PlainTextResponse

from libs.common.api import StoreTransactions, transactions_of
from libs.common.auth import require_admin
from libs.common.bus import Message
from libs.common.errors import MANAGEMENT_ERRORS, ApiError, error_responses
from services.ingest.calls import CallRejected, Receipt, to_message
from services.ingest.gateway import Ingest, IngestDep, publish, read_body
from services.ingest.schemas import WechatAccountRequest, WechatAccountView
from services.ingest.store import IngestStore
from services.ingest.wechat import (
    CallbackRefused,
    WechatAccount,
    WechatPush,
    calls_of,
    check_nonce,
    check_signature,
    check_timestamp,
    decrypt,
    parse_xml,
)

accounts = APIRouter(
    prefix="/wechat/accounts",
    tags=["wechat"],
    dependencies=[Depends(require_admin)],
    responses=MANAGEMENT_ERRORS,
)
callbacks = APIRouter(prefix="/wechat", tags=["wechat"])
Stores = Annotated[StoreTransactions[IngestStore], Depends(transactions_of(IngestStore))]
AppId = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="The account's AppID (`wx…`).")
]
# 400 unreadable, 401 not WeChat's, 404 no such account, 413 too large, 415 neither plain nor
# gzip, 422 an app id that cannot be one, 503 Kafka down.
_CALLBACK_ERRORS = error_responses(400, 401, 404, 413, 415, 422, 503)
# Answered in plain text, as WeChat reads it; errors in the one JSON format.
_CALLBACK_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
    **_CALLBACK_ERRORS,
}
_SUCCESS = "success"  # what WeChat expects of a push it should not retry


@accounts.put("/{app_id}", responses=error_responses(422))
async def save_account(
    app_id: AppId, body: WechatAccountRequest, stores: Stores
) -> WechatAccountView:
    """Receive this account's callbacks from now on (or change how they are checked)."""
    async with stores() as store:
        if not await store.source_exists(body.source_id):
            raise ApiError(
                422, "unknown_source", f"There is no source {body.source_id!r}.", "source_id"
            )
        account = await store.save_wechat_account(
            app_id, body.source_id, body.token, body.encoding_aes_key
        )
    return WechatAccountView.of(account)


@accounts.get("")
async def list_accounts(stores: Stores) -> list[WechatAccountView]:
    async with stores() as store:
        found = await store.wechat_accounts()
    return [WechatAccountView.of(account) for account in found]


@accounts.delete("/{app_id}", status_code=204, responses=error_responses(404))
async def delete_account(app_id: AppId, stores: Stores) -> Response:
    async with stores() as store:
        if not await store.delete_wechat_account(app_id):
            raise _no_such_account(app_id)
    return Response(status_code=204)


@callbacks.get("/{app_id}/callback", responses=_CALLBACK_ANSWERS)
async def verify_server(
    app_id: AppId,
    stores: Stores,
    ingest: IngestDep,
    signature: str | None = None,
    timestamp: str | None = None,
    nonce: str | None = None,
    echostr: str | None = None,
) -> PlainTextResponse:
    """WeChat's check that this URL is the account's server: `echostr` back if signed."""
    if echostr is None:
        raise ApiError(400, "invalid_callback", "echostr is missing", "echostr")
    async with stores() as store:
        account = await _account(store, app_id)
        stamp = _checked(ingest, account, signature, timestamp, nonce)
        await _first_sight(store, account, stamp, nonce)
    return PlainTextResponse(echostr)


@callbacks.post("/{app_id}/callback", responses=_CALLBACK_ANSWERS)
async def receive_push(
    app_id: AppId,
    request: Request,
    stores: Stores,
    ingest: IngestDep,
    signature: str | None = None,
    timestamp: str | None = None,
    nonce: str | None = None,
    encrypt_type: str | None = None,
    msg_signature: str | None = None,
) -> PlainTextResponse:
    """An event or message WeChat pushed: published as the person's behaviour, once Kafka
    has it. The nonce is recorded in the same transaction, committed only after Kafka's
    acknowledgement: a push that could not be published may come again."""
    body = await read_body(request, ingest.settings.ingest_max_event_bytes, "The callback")
    received_at = datetime.now(UTC)
    async with stores() as store:
        account = await _account(store, app_id)
        try:
            envelope = parse_xml(body)
            if encrypt_type == "aes":
                stamp = check_timestamp(timestamp, time.time(), _window(ingest))
                once = check_nonce(nonce)
                message = _decrypted(account, envelope, timestamp or "", once, msg_signature)
            else:
                stamp = _checked(ingest, account, signature, timestamp, nonce)
                message = envelope
        except CallbackRefused as refused:
            raise _refusal(refused) from None
        await _first_sight(store, account, stamp, nonce)
        await publish(ingest, _messages(account, message, received_at))
    return PlainTextResponse(_SUCCESS)


def _decrypted(
    account: WechatAccount,
    envelope: dict[str, str],
    timestamp: str,
    nonce: str,
    msg_signature: str | None,
) -> dict[str, str]:
    if account.encoding_aes_key is None:
        raise CallbackRefused(
            401, "encrypt_type", "the account has no EncodingAESKey: it takes plaintext callbacks"
        )
    encrypted = envelope.get("Encrypt")
    if not encrypted:
        raise CallbackRefused(400, "Encrypt", "an encrypted callback needs its Encrypt element")
    check_signature(msg_signature, "msg_signature", account.token, timestamp, nonce, encrypted)
    return parse_xml(decrypt(encrypted, account.encoding_aes_key, account.app_id))


def _checked(
    ingest: Ingest,
    account: WechatAccount,
    signature: str | None,
    timestamp: str | None,
    nonce: str | None,
) -> int:
    """The timestamp of a callback signed with the account's token, within the window."""
    try:
        stamp = check_timestamp(timestamp, time.time(), _window(ingest))
        once = check_nonce(nonce)
        check_signature(signature, "signature", account.token, timestamp or "", once)
        return stamp
    except CallbackRefused as refused:
        raise _refusal(refused) from None


def _messages(
    account: WechatAccount, fields: dict[str, str], received_at: datetime
) -> list[Message]:
    try:
        push = WechatPush.of(fields)
        receipt = Receipt(account.source_id, received_at)
        return [to_message(kind, call, receipt) for kind, call in calls_of(push, account.app_id)]
    except CallbackRefused as refused:
        raise _refusal(refused) from None
    except CallRejected as rejected:
        raise ApiError(400, "invalid_callback", rejected.reason, rejected.field) from None


async def _first_sight(
    store: IngestStore, account: WechatAccount, timestamp: int, nonce: str | None
) -> None:
    assert nonce is not None  # checked with the signature
    if not await store.first_sight_of_nonce(account.app_id, timestamp, nonce):
        raise ApiError(401, "unauthorized", "nonce was seen before: a replayed callback", "nonce")


async def _account(store: IngestStore, app_id: str) -> WechatAccount:
    account = await store.wechat_account(app_id)
    if account is None:
        raise _no_such_account(app_id)
    return account


def _window(ingest: Ingest) -> float:
    return ingest.settings.ingest_wechat_replay_window_seconds


def _refusal(refused: CallbackRefused) -> ApiError:
    code = "unauthorized" if refused.status == 401 else "invalid_callback"
    return ApiError(refused.status, code, refused.reason, refused.field)


def _no_such_account(app_id: str) -> ApiError:
    return ApiError(404, "not_found", f"There is no WeChat account {app_id!r}.", "app_id")

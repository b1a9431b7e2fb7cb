"""Signed tracking tokens: the click, open and unsubscribe links in every message.

Content signs them when it rewrites a message's links; dispatch verifies them when a recipient
follows one. A token names the message by its idempotency key and, for a click, the one URL it
may redirect to, so a token cannot be forged or pointed elsewhere without the secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

import orjson

TrackingAction = Literal["click", "open", "unsubscribe"]
_ACTION_CODES: dict[TrackingAction, str] = {"click": "c", "open": "o", "unsubscribe": "u"}
_ACTIONS_BY_CODE = {code: action for action, code in _ACTION_CODES.items()}
_MAX_TOKEN_LENGTH = 8192


class InvalidToken(ValueError):
    """The token is malformed, or its signature is not ours."""


@dataclass(frozen=True, slots=True)
class TrackingToken:
    """What a tracking link says: which message, which action, and for a click, where to."""

    idempotency_key: str
    action: TrackingAction
    url: str | None = None


def sign(token: TrackingToken, secret: str) -> str:
    """The URL-safe string for `token`, signed with `secret`."""
    _require_secret(secret)
    payload: dict[str, str] = {"k": token.idempotency_key, "a": _ACTION_CODES[token.action]}
    if token.url is not None:
        payload["u"] = token.url
    body = _encode(orjson.dumps(payload))
    return f"{body}.{_encode(_mac(body, secret))}"


def verify(value: str, secret: str) -> TrackingToken:
    """The token `value` carries, if `secret` signed it; otherwise `InvalidToken`."""
    _require_secret(secret)
    if len(value) > _MAX_TOKEN_LENGTH or value.count(".") != 1:
        raise InvalidToken("not a tracking token")
    body, signature = value.split(".")
    if not hmac.compare_digest(_decode(signature), _mac(body, secret)):
        raise InvalidToken("the signature does not match")
    try:
        payload = orjson.loads(_decode(body))
        action = _ACTIONS_BY_CODE[payload["a"]]
        key = payload["k"]
        url = payload.get("u")
    except (orjson.JSONDecodeError, KeyError, TypeError) as error:
        raise InvalidToken("the token's content is not a tracking token") from error
    if not isinstance(key, str) or not (url is None or isinstance(url, str)):
        raise InvalidToken("the token's content is not a tracking token")
    if (action == "click") != (url is not None):
        raise InvalidToken("a click token carries a URL and only a click token does")
    return TrackingToken(idempotency_key=key, action=action, url=url)


def tracking_url(base_url: str, token: TrackingToken, secret: str) -> str:
    """The public link for `token`: `<base>/c/<token>`, `/o/<token>` or `/u/<token>`."""
    return f"{base_url.rstrip('/')}/{_ACTION_CODES[token.action]}/{sign(token, secret)}"


def _mac(body: str, secret: str) -> bytes:
    return hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as error:
        raise InvalidToken("not a tracking token") from error


def _require_secret(secret: str) -> None:
    if not secret:
        raise ValueError("CLOSELOOP_TRACKING_SECRET is not set: tracking links cannot be signed")

"""WeChat official-account callbacks: the platform's signature, its message encryption, and the
events it pushes turned into Segment calls.

WeChat signs each callback with `signature = sha1(sorted(token, timestamp, nonce))` in the
query; in the encrypted mode the body's `<Encrypt>` is AES-256-CBC of
`random(16) + msg_len(4, network order) + msg + app_id`, PKCS#7-padded to 32 bytes, under the
key `base64(EncodingAESKey + "=")` with its first 16 bytes as the IV, and signed by
`msg_signature = sha1(sorted(token, timestamp, nonce, Encrypt))`. Pure: no I/O here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_BLOCK = 32
# What WeChat's console accepts: a token of 3 to 32 letters and digits, a 43-character key.
TOKEN_PATTERN = r"^[A-Za-z0-9]{3,32}$"
AES_KEY_PATTERN = r"^[A-Za-z0-9]{43}$"
_DOCTYPE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_SHA1_HEX = re.compile(r"[0-9A-Fa-f]{40}")
_NONCE = re.compile(r"[A-Za-z0-9]{1,64}")
_UNIX_TIME = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True)
class WechatAccount:
    """An official account ingest receives callbacks of: its calls carry `source_id`; `token`
    checks signatures, `encoding_aes_key` (when set) decrypts the encrypted mode."""

    app_id: str
    source_id: str
    token: str
    encoding_aes_key: str | None
    created_at: datetime
    updated_at: datetime


class CallbackRefused(ValueError):
    """A callback that is not WeChat's, or not one ingest can read; `field` names the query
    parameter or body part at fault; `status` is 401 (not WeChat's) or 400 (unreadable)."""

    def __init__(self, status: int, field: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.field = field
        self.reason = reason


def signature(*parts: str) -> str:
    """WeChat's signature of a callback: the SHA-1 of its parts sorted and joined."""
    return hashlib.sha1("".join(sorted(parts)).encode(), usedforsecurity=False).hexdigest()


def check_signature(expected: str | None, field: str, *parts: str) -> None:
    if expected is None or not _SHA1_HEX.fullmatch(expected):
        raise CallbackRefused(401, field, f"{field} must be a SHA-1 in hex")
    if not hmac.compare_digest(expected.lower(), signature(*parts)):
        raise CallbackRefused(401, field, f"{field} does not match the account's token")


def check_nonce(value: str | None) -> str:
    if value is None or not _NONCE.fullmatch(value):
        raise CallbackRefused(401, "nonce", "nonce must be 1 to 64 letters and digits")
    return value


def check_timestamp(value: str | None, now: float, window_seconds: float) -> int:
    """The callback's timestamp, if within `window_seconds` of now either way: an older one
    is a replay (or a clock off by more than the window)."""
    if value is None or not _UNIX_TIME.fullmatch(value):
        raise CallbackRefused(401, "timestamp", "timestamp must be the callback's Unix time")
    timestamp = int(value)
    if abs(now - timestamp) > window_seconds:
        raise CallbackRefused(
            401, "timestamp", f"timestamp is more than {window_seconds:g} s from now"
        )
    return timestamp


def decrypt(encrypted: str, encoding_aes_key: str, app_id: str) -> bytes:
    """The XML message inside `<Encrypt>`; refused unless it decrypts, unpads and names
    `app_id` as WeChat's message encryption lays it out."""
    key = base64.b64decode(encoding_aes_key + "=")
    try:
        ciphertext = base64.b64decode(encrypted, validate=True)
    except ValueError:  # binascii.Error, or text that is not ASCII
        raise CallbackRefused(400, "Encrypt", "Encrypt is not base64") from None
    if not ciphertext or len(ciphertext) % 16:
        raise CallbackRefused(400, "Encrypt", "Encrypt is not whole AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    pad = padded[-1]
    if not 1 <= pad <= _BLOCK or padded[-pad:] != bytes([pad]) * pad:
        raise CallbackRefused(401, "Encrypt", "Encrypt was not made with the account's key")
    content = padded[16:-pad]
    length = int.from_bytes(content[:4], "big")
    message, named = content[4 : 4 + length], content[4 + length :]
    if len(message) != length or named != app_id.encode():
        raise CallbackRefused(401, "Encrypt", "Encrypt was not made for this account")
    return message


def parse_xml(body: bytes) -> dict[str, str]:
    """The callback's XML as {element: text} (its top level; WeChat's pushes are flat)."""
    if _DOCTYPE.search(body):
        raise CallbackRefused(400, "body", "the XML may not declare a DOCTYPE or entities")
    try:
        root = ElementTree.fromstring(body)
    except (ElementTree.ParseError, LookupError, ValueError) as error:
        raise CallbackRefused(400, "body", f"the body is not XML: {error}") from None
    return {child.tag: (child.text or "").strip() for child in root}


@dataclass(frozen=True)
class WechatPush:
    """One event or message WeChat pushed: who (the OpenID, and the UnionID when the account
    is bound to an open-platform account), when, and what."""

    openid: str
    created_at: datetime
    message_type: str
    event: str | None = None
    event_key: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, fields: Mapping[str, str]) -> WechatPush:
        openid = fields.get("FromUserName", "")
        if not openid:
            raise CallbackRefused(400, "FromUserName", "the push names no FromUserName (OpenID)")
        created = fields.get("CreateTime", "")
        if not _UNIX_TIME.fullmatch(created):
            raise CallbackRefused(400, "CreateTime", "CreateTime must be a Unix time")
        try:
            created_at = datetime.fromtimestamp(int(created), UTC)
        except (OverflowError, OSError, ValueError):
            raise CallbackRefused(400, "CreateTime", "CreateTime is out of range") from None
        event = fields.get("Event") or None
        return cls(
            openid=openid,
            created_at=created_at,
            message_type=fields.get("MsgType", ""),
            event=event.lower() if event is not None else None,
            event_key=fields.get("EventKey") or None,
            fields=dict(fields),
        )

    @property
    def unionid(self) -> str | None:
        return self.fields.get("UnionId") or self.fields.get("UnionID") or None

    def dedup_key(self) -> str:
        """WeChat retries a push it got no answer to: a message by its MsgId, an event by
        sender and time (WeChat's own advice), so a retry becomes the same calls."""
        msg_id = self.fields.get("MsgId")
        if msg_id:
            return f"msg:{msg_id}"
        return f"event:{self.openid}:{int(self.created_at.timestamp())}:{self.event}"


def behaviour_of(push: WechatPush, app_id: str) -> tuple[str, dict[str, Any]] | None:
    """The track event name and properties of a push; None for a push that is no behaviour
    of the person's (location reports, template-message receipts…)."""
    properties: dict[str, Any] = {"app_id": app_id}
    if push.message_type != "event":
        properties |= {"message_type": push.message_type, "msg_id": push.fields.get("MsgId")}
        if push.message_type == "text":
            properties["text"] = push.fields.get("Content", "")
        return "wechat_message", properties
    key = push.event_key
    if push.event == "subscribe":
        # Followed by scanning a QR code with a scene: EventKey `qrscene_<scene>`.
        if key and key.startswith("qrscene_"):
            properties["scene"] = key.removeprefix("qrscene_")
            properties["ticket"] = push.fields.get("Ticket")
        return "wechat_follow", properties
    if push.event == "unsubscribe":
        return "wechat_unfollow", properties
    if push.event == "click":
        return "wechat_menu_click", properties | {"key": key}
    if push.event == "view":
        return "wechat_menu_view", properties | {"url": key}
    if push.event == "scan":
        return "wechat_scan", properties | {"scene": key, "ticket": push.fields.get("Ticket")}
    return None


def calls_of(push: WechatPush, app_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The Segment calls a push becomes, as (kind, call): an identify that puts the OpenID
    (and UnionID) on the person's profile, with whether they follow the account, then the
    track of what they did. Both are the OpenID's anonymous calls; their messageIds come from
    the push, so WeChat's retry of it is a known duplicate."""
    behaviour = behaviour_of(push, app_id)
    if behaviour is None:
        return []
    event, properties = behaviour
    identifiers = {"wechat_openid": push.openid}
    if push.unionid:
        identifiers["wechat_unionid"] = push.unionid
    traits: dict[str, Any] = dict(identifiers)
    if event in ("wechat_follow", "wechat_unfollow"):
        traits["wechat_subscribed"] = event == "wechat_follow"
    message_id = "wx-" + hashlib.sha256(f"{app_id}|{push.dedup_key()}".encode()).hexdigest()[:32]
    shared = {
        "anonymousId": push.openid,
        "timestamp": push.created_at.isoformat(),
        "context": {**identifiers, "library": {"name": "wechat-callback"}},
    }
    return [
        ("identify", {**shared, "messageId": f"{message_id}-i", "traits": traits}),
        (
            "track",
            {
                **shared,
                "messageId": f"{message_id}-t",
                "event": event,
                "properties": {k: v for k, v in properties.items() if v is not None},
            },
        ),
    ]

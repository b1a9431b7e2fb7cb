"""WeChat's side of an official account's callbacks, as its documentation describes it: the
signed query, the push XML, and the message encryption. Written apart from ingest's code, so a
test checks ingest against the documented scheme rather than against itself."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def sign(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def new_aes_key() -> str:
    """An EncodingAESKey: 43 letters and digits (32 bytes in base64, its `=` left off)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(43))


def encrypt(message: bytes, encoding_aes_key: str, app_id: str) -> str:
    """`<Encrypt>`: base64 of AES-256-CBC(random(16) + len(4, big-endian) + msg + appid),
    PKCS#7-padded to 32 bytes, key base64(EncodingAESKey + "="), IV its first 16 bytes."""
    key = base64.b64decode(encoding_aes_key + "=")
    plain = os.urandom(16) + len(message).to_bytes(4, "big") + message + app_id.encode()
    pad = 32 - len(plain) % 32
    plain += bytes([pad]) * pad
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def push_xml(
    openid: str,
    msg_type: str = "event",
    *,
    account: str = "gh_0123456789ab",
    created: int | None = None,
    **fields: str,
) -> bytes:
    """A push as WeChat sends it: `push_xml("o6_x", Event="subscribe")`."""
    parts = {
        "ToUserName": account,
        "FromUserName": openid,
        "CreateTime": str(created if created is not None else int(time.time())),
        "MsgType": msg_type,
        **fields,
    }
    inner = "".join(f"<{name}><![CDATA[{value}]]></{name}>" for name, value in parts.items())
    return f"<xml>{inner}</xml>".encode()


@dataclass(frozen=True)
class WechatPlatform:
    """Signs (and encrypts) callbacks for one official account."""

    app_id: str
    token: str
    encoding_aes_key: str | None = None

    def query(self, *, timestamp: int | None = None, nonce: str | None = None) -> dict[str, str]:
        stamp = str(timestamp if timestamp is not None else int(time.time()))
        once = nonce or str(secrets.randbelow(10**10))
        return {"signature": sign(self.token, stamp, once), "timestamp": stamp, "nonce": once}

    def encrypted(
        self, message: bytes, *, timestamp: int | None = None
    ) -> tuple[dict[str, str], bytes]:
        """The query and body of the encrypted mode's callback carrying `message`."""
        assert self.encoding_aes_key is not None
        query = self.query(timestamp=timestamp)
        ciphertext = encrypt(message, self.encoding_aes_key, self.app_id)
        query |= {
            "encrypt_type": "aes",
            "msg_signature": sign(self.token, query["timestamp"], query["nonce"], ciphertext),
        }
        body = (
            "<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName>"
            f"<Encrypt><![CDATA[{ciphertext}]]></Encrypt></xml>"
        )
        return query, body.encode()

    def account(self, source_id: str) -> dict[str, Any]:
        """The body of `PUT /wechat/accounts/{app_id}` for this account."""
        body: dict[str, Any] = {"source_id": source_id, "token": self.token}
        if self.encoding_aes_key is not None:
            body["encoding_aes_key"] = self.encoding_aes_key
        return body

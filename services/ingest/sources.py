"""Sources and their write keys: making a key, hashing it, and remembering lookups briefly."""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

WRITE_KEY_PREFIX = "clwk_"
DISPLAY_PREFIX_LENGTH = len(WRITE_KEY_PREFIX) + 6


@dataclass(frozen=True)
class Source:
    """A system that sends events, known by its write key."""

    id: str
    name: str
    key_prefix: str
    enabled: bool
    created_at: datetime


@dataclass(frozen=True)
class NewWriteKey:
    """A freshly made key: shown to its owner once, stored only as `key_hash`."""

    key: str
    key_hash: str
    key_prefix: str


def new_source_id() -> str:
    return f"src_{secrets.token_hex(8)}"


def new_write_key() -> NewWriteKey:
    key = WRITE_KEY_PREFIX + secrets.token_urlsafe(32)
    return NewWriteKey(key=key, key_hash=hash_write_key(key), key_prefix=display_prefix(key))


def hash_write_key(key: str) -> str:
    """sha256, hex: a write key is long and random, so a slow password hash buys nothing."""
    return hashlib.sha256(key.encode("utf-8", errors="surrogatepass")).hexdigest()


def display_prefix(key: str) -> str:
    """The start of a key, enough for its owner to tell which one it is, too little to use."""
    return key[:DISPLAY_PREFIX_LENGTH]


def basic_auth_username(authorization: str | None) -> str | None:
    """The username of an `Authorization: Basic` header: Segment's SDKs send the write key there."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, _, _ = decoded.partition(":")
    return username or None


class WriteKeyCache:
    """Lookups by key hash for `ttl` seconds, unknown keys included, bounded in size.

    Bounded because the keys come from callers: random keys must not grow it without limit.
    """

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, Source | None]] = {}

    def get(self, key_hash: str) -> tuple[bool, Source | None]:
        """(found, source): found is False when the hash must be looked up again."""
        entry = self._entries.get(key_hash)
        if entry is None:
            return False, None
        expires_at, source = entry
        if self._clock() >= expires_at:
            del self._entries[key_hash]
            return False, None
        return True, source

    def put(self, key_hash: str, source: Source | None) -> None:
        if self._ttl <= 0:
            return
        if len(self._entries) >= self._max_entries:
            self._entries.clear()
        self._entries[key_hash] = (self._clock() + self._ttl, source)

    def forget_source(self, source_id: str) -> None:
        """Drop a source's entry at once, so disabling it here takes effect here immediately."""
        stale = [
            key_hash
            for key_hash, (_, source) in self._entries.items()
            if source is not None and source.id == source_id
        ]
        for key_hash in stale:
            del self._entries[key_hash]

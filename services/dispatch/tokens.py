"""Provider access tokens shared by every replica through a PostgreSQL lease.

WeChat and WeCom keep one valid access token per app: fetching a new one retires the last
(after a short overlap), and fetches are counted against a daily quota. So the token lives in
the `access_tokens` row of its credential. A replica reads it there; when it is missing or due
(`REFRESH_MARGIN` before it expires), one replica takes the row's lease and fetches, and the
others keep using the old token while it is still valid, or wait for the new one. A token the
provider refuses (expired early, revoked) is invalidated for all and fetched again once.
Each process remembers the token it read until it is due, so a send costs no query.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

from libs.common.db import Sessions, session_transaction
from services.dispatch.store import DispatchStore, StoredToken

# A token is refreshed this long before it expires (WeChat's tokens live 7,200 s).
REFRESH_MARGIN = timedelta(seconds=300)
# How long a replica may take to fetch a token before another may try.
_LEASE = timedelta(seconds=15)
# How often a replica waiting for another's refresh looks at the row again.
_WAIT_POLL_SECONDS = 0.05
# While another replica refreshes a due token that is still valid, this one uses it this long
# before it reads the row again.
_OLD_TOKEN_SECONDS = 1.0

# Fetches a new token from the provider: the token and its lifetime in seconds.
FetchToken = Callable[[], Awaitable[tuple[str, float]]]


def credential_key(kind: str, app_id: str, secret: str, base_url: str) -> str:
    """The row of a credential: readable by kind and app, and a new row for a new secret (or
    provider address), whose token the old one's would not be."""
    digest = hashlib.sha256(f"{base_url}\n{secret}".encode()).hexdigest()[:16]
    return f"{kind}:{app_id}:{digest}"


class AccessTokens:
    """One process's side of the shared tokens: its database sessions and its name as a
    lease holder."""

    def __init__(self, sessions: Sessions, schema: str, owner: str) -> None:
        self._sessions = sessions
        self._schema = schema
        self._owner = owner

    def token(self, credential: str, fetch: FetchToken) -> SharedAccessToken:
        return SharedAccessToken(self, credential, fetch)

    async def current(self, credential: str, fetch: FetchToken) -> tuple[str, float]:
        """A token to use now and how many seconds it may be used before asking again:
        the stored one while it is not due; else a new one this replica fetched under the
        lease; else, while another replica refreshes, the old one if still valid."""
        while True:
            async with session_transaction(self._sessions) as session:
                store = DispatchStore(session, self._schema)
                stored = await store.access_token(credential)
                if stored is not None and stored.good_for(REFRESH_MARGIN) > 0:
                    assert stored.access_token is not None
                    return stored.access_token, stored.good_for(REFRESH_MARGIN)
                leased = await store.take_token_lease(
                    credential, self._owner, _LEASE, REFRESH_MARGIN
                )
            if leased:
                return await self._refresh(credential, fetch)
            if _usable_meanwhile(stored):
                assert stored is not None and stored.access_token is not None
                return stored.access_token, _OLD_TOKEN_SECONDS
            await asyncio.sleep(_WAIT_POLL_SECONDS)

    async def invalidate(self, credential: str, access_token: str) -> None:
        async with session_transaction(self._sessions) as session:
            await DispatchStore(session, self._schema).invalidate_token(credential, access_token)

    async def _refresh(self, credential: str, fetch: FetchToken) -> tuple[str, float]:
        try:
            access_token, lifetime = await fetch()
        except BaseException:
            async with session_transaction(self._sessions) as session:
                await DispatchStore(session, self._schema).release_token_lease(
                    credential, self._owner
                )
            raise
        async with session_transaction(self._sessions) as session:
            await DispatchStore(session, self._schema).save_token(
                credential, self._owner, access_token, timedelta(seconds=lifetime)
            )
        return access_token, max(0.0, lifetime - REFRESH_MARGIN.total_seconds())


def _usable_meanwhile(stored: StoredToken | None) -> bool:
    return stored is not None and stored.still_valid()


class SharedAccessToken:
    """One credential's token as a channel adapter uses it: remembered by the process until it
    is due, read from (or refreshed into) the shared row otherwise."""

    def __init__(self, tokens: AccessTokens, credential: str, fetch: FetchToken) -> None:
        self._tokens = tokens
        self._credential = credential
        self._fetch = fetch
        self._token: str | None = None
        self._due = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        token = self._remembered()
        if token is not None:
            return token
        async with self._lock:
            token = self._remembered()
            if token is None:
                token, good_for = await self._tokens.current(self._credential, self._fetch)
                self._token, self._due = token, time.monotonic() + good_for
            return token

    async def invalidate(self, access_token: str) -> None:
        """The provider refused `access_token`: no replica uses it again."""
        if self._token == access_token:
            self._token = None
        await self._tokens.invalidate(self._credential, access_token)

    def _remembered(self) -> str | None:
        if self._token is not None and time.monotonic() < self._due:
            return self._token
        return None

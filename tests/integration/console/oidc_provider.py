"""A local OpenID Connect provider speaking the real protocol's shape: discovery, the authorize
redirect, a token endpoint that checks the client's secret and the PKCE verifier against the
challenge (S256), and its signing keys (JWKS). ID tokens are RS256 JWTs.

A test says who the next person to sign in is (`signs_in`) and can make the provider misbehave
(`tamper`): a token with another nonce, or signed by a key it does not publish.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import secrets
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.integration.support import wait_for

CLIENT_ID = "closeloop-console"
CLIENT_SECRET = "console-secret-for-tests"
_KID = "test-key-1"

Tamper = Literal["nonce", "signature"] | None


@dataclass
class _Grant:
    challenge: str
    nonce: str
    redirect_uri: str
    email: str


@dataclass
class FakeOidcProvider:
    base_url: str = ""
    signs_in: str = ""
    tamper: Tamper = None
    refused_tokens: int = 0
    _grants: dict[str, _Grant] = field(default_factory=dict)
    _key: Any = field(default_factory=lambda: _new_key())
    _stranger_key: Any = field(default_factory=lambda: _new_key())

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/authorize", self._authorize),
                Route("/token", self._token, methods=["POST"]),
                Route("/jwks", self._jwks),
            ]
        )

    async def _discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.base_url,
                "authorization_endpoint": f"{self.base_url}/authorize",
                "token_endpoint": f"{self.base_url}/token",
                "jwks_uri": f"{self.base_url}/jwks",
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    async def _authorize(self, request: Request) -> Response:
        asked = request.query_params
        if (
            asked.get("response_type") != "code"
            or asked.get("client_id") != CLIENT_ID
            or asked.get("code_challenge_method") != "S256"
            or "openid" not in asked.get("scope", "").split()
        ):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = secrets.token_urlsafe(24)
        self._grants[code] = _Grant(
            asked["code_challenge"], asked["nonce"], asked["redirect_uri"], self.signs_in
        )
        back = urlencode({"code": code, "state": asked["state"]})
        return RedirectResponse(f"{asked['redirect_uri']}?{back}", status_code=302)

    async def _token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        grant = self._grants.pop(form.get("code", ""), None)
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return self._refuse("invalid_client")
        if (
            grant is None
            or form.get("grant_type") != "authorization_code"
            or form.get("redirect_uri") != grant.redirect_uri
            or _challenge(form.get("code_verifier", "")) != grant.challenge
        ):
            return self._refuse("invalid_grant")
        return JSONResponse(
            {
                "access_token": secrets.token_urlsafe(16),
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": self._id_token(grant),
            }
        )

    async def _jwks(self, request: Request) -> Response:
        public = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        return JSONResponse({"keys": [{**public, "kid": _KID, "use": "sig", "alg": "RS256"}]})

    def _id_token(self, grant: _Grant) -> str:
        now = int(time.time())
        claims = {
            "iss": self.base_url,
            "aud": CLIENT_ID,
            "sub": hashlib.sha256(grant.email.encode()).hexdigest()[:20],
            "iat": now,
            "exp": now + 300,
            "nonce": "not-the-consoles-nonce" if self.tamper == "nonce" else grant.nonce,
            "email": grant.email,
            "email_verified": True,
        }
        key = self._stranger_key if self.tamper == "signature" else self._key
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": _KID})

    def _refuse(self, error: str) -> Response:
        self.refused_tokens += 1
        return JSONResponse({"error": error}, status_code=400)


def _new_key() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@contextlib.asynccontextmanager
async def running_oidc_provider() -> AsyncIterator[FakeOidcProvider]:
    """The provider, listening on loopback, while the block runs."""
    provider = FakeOidcProvider()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    provider.base_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(provider.app(), log_level="warning", access_log=False))
    task = asyncio.create_task(server.serve(sockets=[listener]))

    async def started() -> bool:
        return bool(server.started)

    await wait_for(started, within=10, what="the fake OIDC provider to listen")
    try:
        yield provider
    finally:
        server.should_exit = True
        await task
        listener.close()

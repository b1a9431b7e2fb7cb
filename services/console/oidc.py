"""Single sign-on with the company's OpenID Connect provider: the authorization code flow with
PKCE (S256), its state and nonce checked, and the ID token's RS256 signature verified against
the provider's published keys (JWKS). Roles stay the console's: the provider only vouches for
an email.

`OidcProvider` does the talking (discovery, keys, the code exchange); the functions beside it
decide, and refuse with `SignInRefused` naming the check that failed.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

import httpx
import jwt

from services.console.accounts import InvalidAccount, normal_email, same_token
from services.console.settings import ConsoleSettings

SCOPES: Final = "openid email profile"
_ALGORITHM: Final = "RS256"
# Clocks differ a little between the provider and the console.
_LEEWAY_SECONDS: Final = 60
_DISCOVERY: Final = "/.well-known/openid-configuration"


class SignInRefused(Exception):
    """A single sign-on that must not sign anyone in; `check` names what failed."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check
        self.message = message


@dataclass(frozen=True)
class ProviderConfiguration:
    """What discovery says: where to send the browser, exchange the code, find the keys."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str

    @classmethod
    def of(cls, document: Any, issuer: str) -> ProviderConfiguration:
        """The discovery document's endpoints; refused when it speaks for another issuer."""
        try:
            found = cls(
                issuer=str(document["issuer"]),
                authorization_endpoint=str(document["authorization_endpoint"]),
                token_endpoint=str(document["token_endpoint"]),
                jwks_uri=str(document["jwks_uri"]),
            )
        except (KeyError, TypeError):
            raise SignInRefused(
                "discovery", "The provider's discovery document is incomplete."
            ) from None
        if found.issuer.rstrip("/") != issuer.rstrip("/"):
            raise SignInRefused("issuer", "The provider's discovery names another issuer.")
        return found


@dataclass(frozen=True)
class Pkce:
    """A code verifier (kept by the console) and its S256 challenge (sent to the provider)."""

    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)  # 64 characters, RFC 7636's unreserved set
        return cls(verifier, challenge_of(verifier))


def challenge_of(verifier: str) -> str:
    """BASE64URL(SHA256(verifier)) without padding (RFC 7636 §4.2, S256)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_url(
    configuration: ProviderConfiguration,
    client_id: str,
    redirect_uri: str,
    state: str,
    nonce: str,
    challenge: str,
) -> str:
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": SCOPES,
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    separator = "&" if "?" in configuration.authorization_endpoint else "?"
    return f"{configuration.authorization_endpoint}{separator}{query}"


def verified_claims(
    id_token: str, keys: dict[str, Any], issuer: str, client_id: str, nonce: str
) -> dict[str, Any]:
    """The ID token's claims once its RS256 signature verifies against the provider's key, it
    is for this client from this issuer, unexpired, and carries the nonce this sign-in sent."""
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.PyJWTError:
        raise SignInRefused("id_token", "The provider's ID token is not a JWT.") from None
    if header.get("alg") != _ALGORITHM:
        raise SignInRefused("signature", f"The ID token is not signed with {_ALGORITHM}.")
    key = _signing_key(keys, header.get("kid"))
    try:
        claims: dict[str, Any] = jwt.decode(
            id_token,
            key,
            algorithms=[_ALGORITHM],
            audience=client_id,
            issuer=issuer,
            leeway=_LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.InvalidSignatureError:
        raise SignInRefused("signature", "The ID token's signature does not verify.") from None
    except jwt.PyJWTError as error:
        raise SignInRefused("id_token", f"The ID token is not acceptable: {error}.") from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise SignInRefused("id_token", "The ID token was issued to another client.")
    if not same_token(_text(claims.get("nonce")), nonce):
        raise SignInRefused("nonce", "The ID token's nonce is not this sign-in's.")
    return claims


def email_of(claims: dict[str, Any]) -> str:
    """The email the provider vouches for; refused when absent or marked unverified."""
    if claims.get("email_verified") is False:
        raise SignInRefused("email", "The provider has not verified this email.")
    try:
        return normal_email(_text(claims.get("email")) or "")
    except InvalidAccount:
        raise SignInRefused("email", "The provider gave no email for this person.") from None


def _signing_key(keys: dict[str, Any], kid: Any) -> Any:
    candidates = [
        key
        for key in keys.get("keys", [])
        if isinstance(key, dict) and key.get("kty") == "RSA" and key.get("use", "sig") == "sig"
    ]
    if kid is not None:
        candidates = [key for key in candidates if key.get("kid") == kid]
    if len(candidates) != 1:
        raise SignInRefused("signature", "No single key of the provider's signs this token.")
    try:
        return jwt.PyJWK(candidates[0], _ALGORITHM).key
    except jwt.PyJWTError:
        raise SignInRefused("signature", "The provider's key cannot be read.") from None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class OidcProvider:
    """The provider the settings name, over one HTTP client; its discovery document is read
    once, its keys again when a token names a key not seen yet (the provider rotated them).
    On `app.state.oidc`; a worker only so that its connections close at shutdown."""

    name = "oidc"

    def __init__(self, settings: ConsoleSettings, timeout: float = 10.0) -> None:
        self.issuer = settings.console_oidc_issuer
        self.client_id = settings.console_oidc_client_id
        self.redirect_url = settings.console_oidc_redirect_url
        self.creates_analysts = settings.console_oidc_creates_analysts
        self._secret = settings.console_oidc_client_secret.get_secret_value()
        self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._configuration: ProviderConfiguration | None = None
        self._keys: dict[str, Any] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.issuer and self.client_id)

    async def configuration(self) -> ProviderConfiguration:
        if self._configuration is None:
            document = await self._json("GET", self.issuer.rstrip("/") + _DISCOVERY, "discovery")
            self._configuration = ProviderConfiguration.of(document, self.issuer)
        return self._configuration

    async def exchange(self, code: str, verifier: str, redirect_uri: str) -> str:
        """The ID token the provider gives for the code and its PKCE verifier."""
        configuration = await self.configuration()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "client_id": self.client_id,
        }
        auth = (self.client_id, self._secret) if self._secret else None
        answer = await self._json("POST", configuration.token_endpoint, "token", form, auth)
        id_token = answer.get("id_token") if isinstance(answer, dict) else None
        if not isinstance(id_token, str):
            raise SignInRefused("token", "The provider's token answer has no ID token.")
        return id_token

    async def claims(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The token's verified claims; the keys are read again once if none matched."""
        configuration = await self.configuration()
        try:
            return verified_claims(
                id_token, await self._signing_keys(), configuration.issuer, self.client_id, nonce
            )
        except SignInRefused as refused:
            if refused.check != "signature" or self._keys is None:
                raise
            self._keys = None
            return verified_claims(
                id_token, await self._signing_keys(), configuration.issuer, self.client_id, nonce
            )

    async def _signing_keys(self) -> dict[str, Any]:
        if self._keys is None:
            configuration = await self.configuration()
            keys = await self._json("GET", configuration.jwks_uri, "keys")
            self._keys = keys if isinstance(keys, dict) else {}
        return self._keys

    async def _json(
        self,
        method: str,
        url: str,
        what: str,
        form: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> Any:
        try:
            response = await self._http.request(method, url, data=form, auth=auth)
        except httpx.HTTPError as error:
            detail = type(error).__name__
            raise SignInRefused(what, f"The provider did not answer ({detail}).") from None
        if response.status_code != 200:
            raise SignInRefused(what, f"The provider refused ({what}: {response.status_code}).")
        try:
            return response.json()
        except ValueError:
            raise SignInRefused(what, f"The provider's {what} answer is not JSON.") from None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self._http.aclose()

    def is_alive(self) -> bool:
        return True

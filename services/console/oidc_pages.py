"""Signing in with the company's OpenID Connect provider, when the settings name one.

`/sign-in/oidc` stores a new state, nonce and PKCE verifier, ties them to this browser with a
cookie, and sends the browser to the provider. `/sign-in/oidc/callback` takes the state back
(once), checks it is the same browser, exchanges the code with the verifier, verifies the ID
token, and signs in the console user with that email into the same server-side session a
password opens. Anything that fails is refused and signs nobody in.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from libs.common.api import from_state
from libs.common.errors import ApiError
from services.console.access import Stores
from services.console.accounts import Viewer, hash_password, new_token, token_hash
from services.console.api import SettingsDep, sign_in_refused, start_session
from services.console.oidc import OidcProvider, Pkce, SignInRefused, authorization_url, email_of
from services.console.pages import page
from services.console.store import PendingSignIn, User

BROWSER_COOKIE: Final = "console_oidc"
_PENDING_MINUTES: Final = 10
_HOME: Final = "/segments"
_CALLBACK: Final = "/sign-in/oidc/callback"

router = APIRouter(include_in_schema=False)
ProviderDep = Annotated[OidcProvider, Depends(from_state("oidc", OidcProvider))]
_Param = Annotated[str | None, Query(max_length=4096, pattern=r"^[^\x00]*$")]


@router.get("/sign-in/oidc")
async def start_oidc_sign_in(
    request: Request,
    stores: Stores,
    settings: SettingsDep,
    provider: ProviderDep,
    next: Annotated[str, Query(max_length=2048)] = _HOME,
) -> Response:
    """Send the browser to the provider, remembering what its way back must match."""
    _enabled(provider)
    try:
        configuration = await provider.configuration()
    except SignInRefused as refused:
        return sign_in_refused(settings, next, refused.message, 502)
    state, nonce, browser, pkce = new_token(), new_token(), new_token(), Pkce.new()
    pending = PendingSignIn(token_hash(browser), nonce, pkce.verifier, next)
    expires = datetime.now(UTC) + timedelta(minutes=_PENDING_MINUTES)
    async with stores() as store:
        await store.begin_oidc_sign_in(token_hash(state), pending, expires)
    target = authorization_url(
        configuration,
        provider.client_id,
        _redirect_uri(request, provider),
        state,
        nonce,
        pkce.challenge,
    )
    response = RedirectResponse(target, status_code=303)
    # Lax, not Strict: the provider's redirect back is a navigation from another site.
    response.set_cookie(
        BROWSER_COOKIE,
        browser,
        max_age=_PENDING_MINUTES * 60,
        path=_CALLBACK,
        secure=settings.console_secure_cookies,
        httponly=True,
        samesite="lax",
    )
    return response


@router.get(_CALLBACK)
async def finish_oidc_sign_in(
    request: Request,
    stores: Stores,
    settings: SettingsDep,
    provider: ProviderDep,
    state: _Param = None,
    code: _Param = None,
    error: _Param = None,
) -> Response:
    """Sign in the console user the provider vouches for, if every check holds."""
    _enabled(provider)
    try:
        pending = await _pending(stores, request, state)
        if error is not None or not code:
            raise SignInRefused("code", f"The provider did not sign you in ({error or 'no code'}).")
        id_token = await provider.exchange(
            code, pending.code_verifier, _redirect_uri(request, provider)
        )
        claims = await provider.claims(id_token, pending.nonce)
        user = await _console_user(stores, provider, email_of(claims))
    except SignInRefused as refused:
        response = sign_in_refused(settings, _HOME, refused.message, 403)
        response.delete_cookie(BROWSER_COOKIE, path=_CALLBACK)
        return response
    # A page, not a redirect: the session cookie is SameSite=Strict, and a browser does not
    # send it on a redirect chain that began at the provider's site.
    signed_in = await start_session(stores, settings, user.id, pending.next)
    target = signed_in.headers["location"]
    response = page("signed_in.html", email=user.email, next=target)
    for cookie in signed_in.headers.getlist("set-cookie"):
        response.headers.append("set-cookie", cookie)
    response.delete_cookie(BROWSER_COOKIE, path=_CALLBACK)
    return response


def _enabled(provider: OidcProvider) -> None:
    if not provider.enabled:
        raise ApiError(404, "not_found", "Single sign-on is not set up for this console.")


async def _pending(stores: Stores, request: Request, state: str | None) -> PendingSignIn:
    """The sign-in the state names, started by this browser; refused otherwise."""
    if not state:
        raise SignInRefused("state", "The provider's answer has no state; sign in again.")
    async with stores() as store:
        pending = await store.take_oidc_sign_in(token_hash(state), datetime.now(UTC))
    if pending is None:
        raise SignInRefused("state", "This sign-in is unknown or expired; sign in again.")
    browser = request.cookies.get(BROWSER_COOKIE, "")
    if not browser or token_hash(browser) != pending.browser_hash:
        raise SignInRefused("state", "This sign-in was started in another browser.")
    return pending


async def _console_user(stores: Stores, provider: OidcProvider, email: str) -> User:
    """The console user with this email; a new analyst if the settings allow, else refused."""
    async with stores() as store:
        user = await store.user_by_email(email)
    if user is not None:
        return user
    if not provider.creates_analysts:
        raise SignInRefused("email", f"No one may sign in to the console as {email}.")
    user_id = f"usr_{uuid.uuid4().hex}"
    # A password nobody knows: this person signs in through the provider only.
    unusable = await asyncio.to_thread(hash_password, new_token())
    async with stores() as store:
        if await store.add_user(user_id, email, unusable, "analyst"):
            newcomer = Viewer(user_id, email, "analyst", "")
            after = {"email": email, "role": "analyst", "by": "oidc"}
            await store.record(newcomer, "user.added", email, None, after)
        user = await store.user_by_email(email)
    if user is None:
        raise SignInRefused("email", f"{email} could not be added.")
    return user


def _redirect_uri(request: Request, provider: OidcProvider) -> str:
    """The callback URL the provider knows: the setting's, or this console's own."""
    return provider.redirect_url or str(request.url_for("finish_oidc_sign_in"))

"""Every console route's gate: a session (cookie → server-side row), then the role, then the
CSRF token for anything sent with POST.

Routes declare what they need as a parameter: `SignedIn` (any role, reading), `Posting` (any
role, a POST carrying the session's CSRF token), `Editor` (admin or marketer, CSRF checked),
`Administrator` (admin, CSRF checked on POST).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final
from urllib.parse import parse_qsl, quote

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from libs.common.api import StoreTransactions, transactions_of
from libs.common.errors import ApiError, error_response
from services.console.accounts import Viewer, same_token, token_hash
from services.console.store import ConsoleStore

SESSION_COOKIE: Final = "console_session"
CSRF_HEADER: Final = "X-CSRF-Token"
CSRF_FIELD: Final = "csrf_token"
_FORM_TYPE: Final = "application/x-www-form-urlencoded"
_MAX_FORM_BYTES: Final = 1_000_000

Stores = Annotated[StoreTransactions[ConsoleStore], Depends(transactions_of(ConsoleStore))]


class SignInRequired(Exception):
    """No session, or one that expired or was ended."""


async def signed_in_viewer(request: Request, stores: Stores) -> Viewer:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired
    async with stores() as store:
        viewer = await store.viewer(token_hash(token), datetime.now(UTC))
    if viewer is None:
        raise SignInRequired
    return viewer


SignedIn = Annotated[Viewer, Depends(signed_in_viewer)]


async def posting_viewer(request: Request, viewer: SignedIn) -> Viewer:
    await check_csrf(request, viewer.csrf_token)
    return viewer


async def editing_viewer(request: Request, viewer: SignedIn) -> Viewer:
    if not viewer.can_edit:
        raise ApiError(403, "forbidden", f"An {viewer.role} may look but not change anything.")
    await check_csrf(request, viewer.csrf_token)
    return viewer


async def administering_viewer(request: Request, viewer: SignedIn) -> Viewer:
    if not viewer.is_admin:
        raise ApiError(403, "forbidden", "Only an admin may do this.")
    if request.method != "GET":
        await check_csrf(request, viewer.csrf_token)
    return viewer


Posting = Annotated[Viewer, Depends(posting_viewer)]
Editor = Annotated[Viewer, Depends(editing_viewer)]
Administrator = Annotated[Viewer, Depends(administering_viewer)]


async def check_csrf(request: Request, expected: str) -> None:
    """The request carries `expected` in the X-CSRF-Token header or the form's csrf_token."""
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        sent = (await form_fields(request)).get(CSRF_FIELD)
    if not same_token(sent, expected):
        raise ApiError(
            403,
            "csrf_failed",
            "The form's CSRF token is missing or wrong; reload the page and try again.",
            CSRF_FIELD,
        )


async def form_fields(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (the last value of a repeated one); {} for other bodies."""
    if request.headers.get("content-type", "").split(";")[0].strip() != _FORM_TYPE:
        return {}
    body = await request.body()  # kept by the request, so the route can read it again
    if len(body) > _MAX_FORM_BYTES:
        raise ApiError(413, "too_large", f"A form may be at most {_MAX_FORM_BYTES} bytes.")
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False))
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_form", "The form is not UTF-8.") from None


async def answer_sign_in_required(request: Request, exc: Exception) -> Response:
    """A page asked for without a session goes to the sign-in page; anything else is a 401."""
    if request.method in ("GET", "HEAD"):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/sign-in?next={quote(target, safe='')}", status_code=303)
    response: JSONResponse = error_response(
        401, "sign_in_required", "Sign in first: there is no session, or it has ended."
    )
    return response

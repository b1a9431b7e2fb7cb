"""The console's own pages: sign-in and sign-out, the audit log, and the people who may sign in."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from libs.common.api import from_state
from services.console.access import (
    CSRF_FIELD,
    SESSION_COOKIE,
    Administrator,
    Posting,
    SignedIn,
    Stores,
    form_fields,
)
from services.console.accounts import (
    ROLES,
    InvalidAccount,
    checked_role,
    hash_password,
    new_token,
    normal_email,
    password_matches,
    same_token,
    token_hash,
)
from services.console.pages import page
from services.console.settings import ConsoleSettings

SIGN_IN_COOKIE: Final = "console_sign_in"
_HOME: Final = "/segments"
_AUDIT_PAGE: Final = 100

router = APIRouter(include_in_schema=False)
SettingsDep = Annotated[ConsoleSettings, Depends(from_state("settings", ConsoleSettings))]


@router.get("/sign-in")
async def sign_in_page(settings: SettingsDep, next: str = _HOME) -> HTMLResponse:
    """The sign-in form, with a CSRF token tied to a short-lived cookie (double submit): a form
    another site posts cannot sign the browser in as someone else."""
    token = new_token()
    response = page(
        "sign_in.html",
        csrf_token=token,
        next=_local(next),
        error=None,
        oidc=bool(settings.console_oidc_issuer),
    )
    _set_cookie(response, settings, SIGN_IN_COOKIE, token, max_age=3600)
    return response


@router.post("/sign-in")
async def sign_in(request: Request, stores: Stores, settings: SettingsDep) -> Response:
    fields = await form_fields(request)
    target = _local(fields.get("next", _HOME))
    token = request.cookies.get(SIGN_IN_COOKIE, "")
    if not token or not same_token(fields.get(CSRF_FIELD), token):
        return sign_in_refused(settings, target, "The form expired; sign in again.", 403)
    try:
        email = normal_email(fields.get("email", ""))
    except InvalidAccount:
        return sign_in_refused(settings, target, "Wrong email or password.", 401)
    async with stores() as store:
        user = await store.user_by_email(email)
    password = fields.get("password", "")
    hashed = None if user is None else user.password_hash
    if user is None or not await asyncio.to_thread(password_matches, hashed, password):
        return sign_in_refused(settings, target, "Wrong email or password.", 401)
    response = await start_session(stores, settings, user.id, target)
    response.delete_cookie(SIGN_IN_COOKIE, path="/")
    return response


async def start_session(
    stores: Stores, settings: ConsoleSettings, user_id: str, target: str
) -> Response:
    """Sign the person in (a new server-side session, its cookie) and send them to `target`:
    the one way in, for a password and for the OIDC provider alike."""
    session, csrf = new_token(), new_token()
    now = datetime.now(UTC)
    async with stores() as store:
        await store.forget_expired_sessions(now)
        expires = now + timedelta(hours=settings.console_session_hours)
        await store.start_session(token_hash(session), user_id, csrf, expires)
    response = RedirectResponse(_local(target), status_code=303)
    max_age = int(settings.console_session_hours * 3600)
    _set_cookie(response, settings, SESSION_COOKIE, session, max_age=max_age)
    return response


@router.post("/sign-out")
async def sign_out(request: Request, viewer: Posting, stores: Stores) -> Response:
    async with stores() as store:
        await store.end_session(token_hash(request.cookies.get(SESSION_COOKIE, "")))
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/audit")
async def audit_page(
    viewer: SignedIn,
    stores: Stores,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    """Every change made through the console, latest first, a page at a time."""
    async with stores() as store:
        entries = await store.audit_log(_AUDIT_PAGE, before)
    older = entries[-1].id if len(entries) == _AUDIT_PAGE else None
    return page("audit.html", viewer=viewer, entries=entries, older=older)


@router.get("/users")
async def users_page(viewer: Administrator, stores: Stores) -> HTMLResponse:
    async with stores() as store:
        users = await store.users()
    return page("users.html", viewer=viewer, users=users, roles=ROLES, error=None)


@router.post("/users")
async def add_user(request: Request, viewer: Administrator, stores: Stores) -> Response:
    """Add a person who may sign in, with a role; recorded in the audit log."""
    fields = await form_fields(request)
    try:
        email = normal_email(fields.get("email", ""))
        role = checked_role(fields.get("role", ""))
        password_hash = await asyncio.to_thread(hash_password, fields.get("password", ""))
    except InvalidAccount as invalid:
        return await _users_refused(viewer, stores, invalid.field, str(invalid))
    async with stores() as store:
        if not await store.add_user(f"usr_{uuid.uuid4().hex}", email, password_hash, role):
            added = False
        else:
            added = True
            await store.record(viewer, "user.added", email, None, {"email": email, "role": role})
    if not added:
        return await _users_refused(viewer, stores, "email", f"email: {email} already signs in")
    return RedirectResponse("/users", status_code=303)


async def _users_refused(
    viewer: Administrator, stores: Stores, field: str, message: str
) -> Response:
    async with stores() as store:
        users = await store.users()
    error = {"field": field, "message": message}
    return page("users.html", status_code=422, viewer=viewer, users=users, roles=ROLES, error=error)


def sign_in_refused(
    settings: ConsoleSettings, target: str, message: str, status: int
) -> HTMLResponse:
    """The sign-in page again, saying why, with a fresh form."""
    token = new_token()
    response = page(
        "sign_in.html",
        status_code=status,
        csrf_token=token,
        next=target,
        error=message,
        oidc=bool(settings.console_oidc_issuer),
    )
    _set_cookie(response, settings, SIGN_IN_COOKIE, token, max_age=3600)
    return response


def _set_cookie(
    response: Response, settings: ConsoleSettings, name: str, value: str, *, max_age: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=settings.console_secure_cookies,
        httponly=True,
        samesite="strict",
    )


def _local(target: str) -> str:
    """Only a path on the console itself: never another site (`//evil`, `https://evil`)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return _HOME

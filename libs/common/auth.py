"""The management APIs' bearer-token check against `CLOSELOOP_ADMIN_TOKEN`."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from libs.common.errors import ApiError
from libs.common.settings import Settings

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AdminToken",
    description="The admin token, CLOSELOOP_ADMIN_TOKEN, as `Authorization: Bearer <token>`.",
)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Let the request through only with `Authorization: Bearer <CLOSELOOP_ADMIN_TOKEN>`.

    The token is read from `app.state.settings`, which the app factory sets. With no token
    configured every call is refused: management is never open by default.
    """
    settings: Settings = request.app.state.settings
    expected = settings.admin_token.get_secret_value()
    if not expected:
        raise ApiError(
            503,
            "admin_token_unset",
            "Management calls are refused until CLOSELOOP_ADMIN_TOKEN is set for this service.",
        )
    if credentials is None:
        raise ApiError(
            401,
            "unauthorized",
            "Send the admin token as `Authorization: Bearer <token>`.",
            headers=_CHALLENGE,
        )
    if not secrets.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise ApiError(401, "unauthorized", "The admin token is wrong.", headers=_CHALLENGE)

"""The one error format `{"error": {"code", "message", "field"}}` and the handlers emitting it."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common.db import is_transaction_conflict

logger = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    code: str = Field(description="What went wrong, for programs: `not_found`, `invalid_request`…")
    message: str = Field(description="What went wrong and what to do about it, for people.")
    field: str | None = Field(description="The request field at fault, dotted; null: the request.")


class ErrorBody(BaseModel):
    """The one error format, declared in OpenAPI so clients and schemathesis can rely on it."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route or router: each status answered in the one error format.

    Declaring 422 also replaces FastAPI's own `HTTPValidationError`, a shape we never send.
    """
    return {
        status: {"model": ErrorBody, "description": HTTPStatus(status).phrase}
        for status in statuses
    }


# What every management route may answer besides its own errors: a body that is not JSON (400),
# a missing or wrong admin token (401), a request that fails validation (422), the database
# unreachable (503, with Retry-After).
MANAGEMENT_ERRORS = error_responses(400, 401, 422, 503)


class ApiError(Exception):
    """An error a route raises to answer with `status_code` and the one error format."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        field: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers) if headers else None


def error_response(
    status_code: int,
    code: str,
    message: str,
    field: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A response in the one error format, for code that answers without raising."""
    return JSONResponse(
        {"error": {"code": code, "message": message, "field": field}},
        status_code=status_code,
        headers=headers,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Answer ApiError, validation errors and HTTPException in the one error format."""
    app.add_exception_handler(ApiError, _handle_api_error)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(HTTPException, _handle_http_exception)


class UnexpectedErrorMiddleware:
    """Last resort: an exception no handler took becomes a logged 500 `internal`.

    A middleware rather than an `Exception` handler because Starlette re-raises after such a
    handler, and the server would log the same traceback a second time.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def send_tracking_start(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracking_start)
        except Exception as error:
            if response_started:
                raise
            if database_unavailable(error):
                logger.warning(
                    "The database is unavailable answering %s %s: %s",
                    scope["method"],
                    scope["path"],
                    repr(_innermost(error)),
                )
                response = error_response(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    "unavailable",
                    "The database is unavailable; retry shortly.",
                    headers={"Retry-After": str(_RETRY_AFTER_SECONDS)},
                )
            elif is_transaction_conflict(error):
                logger.warning(
                    "A conflict with another transaction answering %s %s: %s",
                    scope["method"],
                    scope["path"],
                    repr(_innermost(error)),
                )
                response = error_response(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    "conflict",
                    "The request met a conflicting change and was rolled back; retry shortly.",
                    headers={"Retry-After": str(_RETRY_AFTER_SECONDS)},
                )
            else:
                logger.exception("Unhandled error answering %s %s", scope["method"], scope["path"])
                response = error_response(
                    HTTPStatus.INTERNAL_SERVER_ERROR, "internal", "An unexpected error occurred."
                )
            await response(scope, receive, send)


_RETRY_AFTER_SECONDS = 1
# What the driver raises while PostgreSQL restarts, fails over or is unreachable.
_UNAVAILABLE_SQLSTATES = frozenset(
    {
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now ("the database system is starting up")
        "08000",  # connection_exception
        "08001",  # sqlclient_unable_to_establish_sqlconnection
        "08003",  # connection_does_not_exist
        "08006",  # connection_failure
    }
)


def database_unavailable(error: BaseException) -> bool:
    """Whether an error (or one it was raised from) says the database cannot be reached right
    now, rather than that the request or the code is wrong: answered 503, and retried by
    clients, instead of 500."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_unavailable(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_unavailable(error: BaseException) -> bool:
    if isinstance(error, ConnectionError | PoolTimeout):  # refused, reset; no pooled connection
        return True
    if isinstance(error, TimeoutError):  # no answer within asyncpg's timeout: a hung host or path
        return True
    if getattr(error, "connection_invalidated", False):  # SQLAlchemy's DBAPIError
        return True
    if getattr(error, "sqlstate", None) in _UNAVAILABLE_SQLSTATES:  # asyncpg's errors
        return True
    # asyncpg's InterfaceError on a connection the server closed.
    return type(error).__name__ == "InterfaceError" and "connection is closed" in str(error)


def _innermost(error: BaseException) -> BaseException:
    while error.__cause__ is not None:
        error = error.__cause__
    return error


async def _handle_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status_code, exc.code, exc.message, exc.field, headers=exc.headers)


async def _handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors: Sequence[Any] = exc.errors()
    if not errors:
        return error_response(422, "invalid_request", "The request is invalid.")
    first = errors[0]
    field = ".".join(str(part) for part in first.get("loc", ())) or None
    message = f"{field}: {first['msg']}" if field else str(first["msg"])
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return error_response(HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_request", message, field)


async def _handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    status = HTTPStatus(exc.status_code)
    message = exc.detail if isinstance(exc.detail, str) else status.phrase
    return error_response(exc.status_code, _code_for(status), message, headers=exc.headers)


def _code_for(status: HTTPStatus) -> str:
    """`not_found` for 404, `method_not_allowed` for 405: the status phrase in snake case."""
    return status.phrase.lower().replace("-", "_").replace(" ", "_").replace("'", "")

"""Process-wide logging: one JSON object per line on stderr, uvicorn's loggers included, and
one line for each request answered with an error."""

from __future__ import annotations

import logging
import re
import secrets
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common.settings import Settings
from libs.common.tracing import current_trace_id

logger = logging.getLogger(__name__)

_HANDLER_NAME = "closeloop"
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.asgi")
_UVICORN_ACCESS_LOGGER = "uvicorn.access"
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__
) | {"message", "asctime", "taskName", "color_message"}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller attached with `extra=` (event_id, topic, group, ...)."""
    return {key: value for key, value in record.__dict__.items() if key not in _RECORD_ATTRIBUTES}


class JsonFormatter(logging.Formatter):
    """Renders a record as one JSON object: time, level, logger, message, service, extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self._service,
        }
        entry.update(extra_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """Human-readable lines for a terminal, extras appended as `key=value`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = " ".join(f"{key}={value}" for key, value in extra_fields(record).items())
        if not extras:
            return line
        head, newline, rest = line.partition("\n")
        return f"{head} {extras}{newline}{rest}"


def access_log_enabled(settings: Settings) -> bool:
    """One line per request only when debugging: the HTTP metrics already count every request."""
    return settings.log_level.upper() == "DEBUG"


def configure_logging(settings: Settings) -> None:
    """Route every logger, uvicorn's too, to one stderr handler; safe to call more than once."""
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        JsonFormatter(settings.service_name) if settings.log_json else TextFormatter()
    )
    handler.addFilter(_with_trace_id)
    root = logging.getLogger()
    for previous in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in (*_UVICORN_LOGGERS, _UVICORN_ACCESS_LOGGER):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.setLevel(logging.NOTSET)
        uvicorn_logger.propagate = True
    # uvicorn writes access lines only when its access logger has a handler to reach.
    logging.getLogger(_UVICORN_ACCESS_LOGGER).propagate = access_log_enabled(settings)


_TRACE_ID_HEADER = b"x-trace-id"
# The trace id of the request being answered, so that every line written meanwhile carries it.
_trace_id: ContextVar[str | None] = ContextVar("closeloop_trace_id", default=None)
# W3C trace context: version-traceid-parentid-flags; version ff and all-zero ids are invalid,
# and a later version may append fields after another dash.
_TRACEPARENT = re.compile(
    rb"(?!ff)[0-9a-f]{2}-(?!0{32})([0-9a-f]{32})-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}(?:-|$)"
)
# Error bodies are a few hundred bytes; more is not the error format and is not worth holding.
_MAX_ERROR_BODY = 8_192


def _with_trace_id(record: logging.LogRecord) -> bool:
    trace_id = _trace_id.get()
    if trace_id is not None:
        record.__dict__.setdefault("trace_id", trace_id)
    return True


class FailedRequestLog:
    """Writes one line for each request answered 400 or above, and gives every request a trace
    id: its span's when tracing is on (libs/common/tracing.py), else its W3C `traceparent`'s,
    else a fresh one, answered in `X-Trace-Id`.

    Without it a service answering hundreds of 401s logs nothing (the access log is off outside
    DEBUG). The line names the route template rather than the path, keeping ids out, except
    for a 404, which has none.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        trace_id = _trace_id_of(scope)
        trace_header = (_TRACE_ID_HEADER, trace_id.encode())
        error: _ErrorResponse | None = None

        async def send_with_trace_id(message: Message) -> None:
            nonlocal error
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), trace_header]}
                if message["status"] >= 400:
                    error = _ErrorResponse(message["status"])
            elif error is not None and message["type"] == "http.response.body":
                error.add(message.get("body", b""))
            await send(message)

        token = _trace_id.set(trace_id)
        try:
            await self.app(scope, receive, send_with_trace_id)
        finally:
            if error is not None:
                error.log(scope)
            _trace_id.reset(token)


def _trace_id_of(scope: Scope) -> str:
    traced = current_trace_id()  # the request's span's, when tracing is on
    if traced is not None:
        return traced
    for name, value in scope["headers"]:
        if name == b"traceparent":
            match = _TRACEPARENT.match(value.strip())
            if match:
                return match[1].decode()
            break
    return secrets.token_hex(16)


class _ErrorResponse:
    """An error response as it is sent: its status, then its body."""

    def __init__(self, status: int) -> None:
        self.status = status
        self._body = bytearray()

    def add(self, chunk: bytes) -> None:
        if len(self._body) < _MAX_ERROR_BODY:
            self._body += chunk

    def log(self, scope: Scope) -> None:
        route = getattr(scope.get("route"), "path_format", None) or scope["path"]
        fields = {"status": self.status, "method": scope["method"], "route": route}
        fields.update(self._reason())
        if self.status >= 500:
            # No traceback: the error middleware logged it already, with the same trace id.
            logger.error("Request failed", extra=fields)
        else:
            # A client's mistake, not the service's: below WARNING, which means server trouble.
            logger.info("Request rejected", extra=fields)

    def _reason(self) -> dict[str, Any]:
        """`code`, `reason` and, if any, `field` of the one error format; nothing otherwise."""
        try:
            error = orjson.loads(self._body)["error"]
            reason = {"code": error["code"], "reason": error["message"]}
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return {}
        if error.get("field") is not None:
            reason["field"] = error["field"]
        return reason

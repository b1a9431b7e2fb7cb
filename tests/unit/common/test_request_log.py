"""One log line per request answered 400 or above, and a trace id on every response."""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import httpx
import orjson
import pytest
from fastapi import APIRouter, Depends, FastAPI
from pydantic import BaseModel, SecretStr

from libs.common.app import create_app
from libs.common.auth import require_admin
from libs.common.settings import Settings

pytestmark = pytest.mark.usefixtures("restore_logging")

_TOKEN = "admin-token-not-for-logs"
_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
_TRACEPARENT = f"00-{_TRACE_ID}-00f067aa0ba902b7-01"


class Signup(BaseModel):
    email: str


def _router() -> APIRouter:
    router = APIRouter()

    @router.get("/things/{thing_id}")
    async def get_thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @router.post("/admin/things/{thing_id}")
    async def change_thing(
        thing_id: str, _admin: Annotated[None, Depends(require_admin)]
    ) -> dict[str, str]:
        return {"id": thing_id}

    @router.post("/signups")
    async def sign_up(signup: Signup) -> dict[str, str]:
        return {"email": signup.email}

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    return router


def _app() -> FastAPI:
    settings = Settings(service_name="segment", log_json=True, admin_token=SecretStr(_TOKEN))
    return create_app(settings, title="Segment", routers=[_router()])


@asynccontextmanager
async def _serving() -> AsyncIterator[httpx.AsyncClient]:
    app = _app()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client,
    ):
        yield client


def _lines(err: str) -> list[dict[str, object]]:
    """The service's log lines, without those of the test's own HTTP client."""
    lines = [orjson.loads(line) for line in err.splitlines()]
    return [line for line in lines if line["logger"] not in ("httpx", "httpcore")]


_REJECTIONS = [
    pytest.param(
        "POST",
        "/admin/things/thing-1",
        {"Authorization": "Bearer wrong-token"},
        None,
        {
            "status": 401,
            "route": "/admin/things/{thing_id}",
            "code": "unauthorized",
            "reason": "The admin token is wrong.",
        },
        id="401",
    ),
    pytest.param(
        "GET",
        "/no/such/thing-1?key=secret-query",
        {},
        None,
        {"status": 404, "route": "/no/such/thing-1", "code": "not_found", "reason": "Not Found"},
        id="404",
    ),
    pytest.param(
        "DELETE",
        "/things/thing-1",
        {},
        None,
        {
            "status": 405,
            "route": "/things/{thing_id}",
            "code": "method_not_allowed",
            "reason": "Method Not Allowed",
        },
        id="405",
    ),
    pytest.param(
        "POST",
        "/signups",
        {},
        {},
        {
            "status": 422,
            "route": "/signups",
            "code": "invalid_request",
            "reason": "body.email: Field required",
            "field": "body.email",
        },
        id="422",
    ),
]


@pytest.mark.parametrize(("method", "url", "headers", "body", "expected"), _REJECTIONS)
async def test_a_rejected_request_logs_one_line_with_its_route_reason_and_trace_id(
    capsys: pytest.CaptureFixture[str],
    method: str,
    url: str,
    headers: dict[str, str],
    body: object,
    expected: dict[str, object],
) -> None:
    async with _serving() as client:
        capsys.readouterr()
        response = await client.request(
            method, url, headers={**headers, "traceparent": _TRACEPARENT}, json=body
        )
        err = capsys.readouterr().err

    assert response.status_code == expected["status"]
    [line] = _lines(err)
    line.pop("time")
    assert line == {
        "level": "INFO",
        "logger": "libs.common.logging",
        "message": "Request rejected",
        "service": "segment",
        "method": method,
        **expected,
        "trace_id": _TRACE_ID,
    }
    assert response.headers["x-trace-id"] == _TRACE_ID
    logged = orjson.dumps(line).decode()
    assert "thing-1" not in logged or expected["status"] == 404
    assert "secret-query" not in logged
    assert _TOKEN not in logged and "wrong-token" not in logged


async def test_without_traceparent_each_request_gets_a_fresh_trace_id_in_log_and_header(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with _serving() as client:
        capsys.readouterr()
        first = await client.get("/no/such/route")
        second = await client.get("/no/such/route", headers={"traceparent": "not-a-traceparent"})
        lines = _lines(capsys.readouterr().err)

    trace_ids = [first.headers["x-trace-id"], second.headers["x-trace-id"]]
    assert [line["trace_id"] for line in lines] == trace_ids
    assert all(re.fullmatch("[0-9a-f]{32}", trace_id) for trace_id in trace_ids)
    assert trace_ids[0] != trace_ids[1]


async def test_a_successful_request_logs_nothing_but_carries_a_trace_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with _serving() as client:
        capsys.readouterr()
        response = await client.get("/things/thing-1", headers={"traceparent": _TRACEPARENT})
        err = capsys.readouterr().err

    assert response.status_code == 200
    assert response.headers["x-trace-id"] == _TRACE_ID
    assert _lines(err) == []


async def test_an_unexpected_error_logs_its_traceback_once_and_one_failed_request_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with _serving() as client:
        capsys.readouterr()
        response = await client.get("/boom", headers={"traceparent": _TRACEPARENT})
        lines = _lines(capsys.readouterr().err)

    assert response.status_code == 500
    [traceback] = [line for line in lines if "exception" in line]
    [failed] = [line for line in lines if line["message"] == "Request failed"]
    assert len(lines) == 2
    assert traceback["trace_id"] == failed["trace_id"] == _TRACE_ID
    assert (failed["level"], failed["status"], failed["route"]) == ("ERROR", 500, "/boom")
    assert failed["code"] == "internal"


async def test_the_root_names_the_service_its_version_and_links_without_a_token() -> None:
    async with _serving() as client:
        response = await client.get("/")
        links = response.json()["links"]
        statuses = [(await client.get(link)).status_code for link in links.values()]

    assert response.status_code == 200
    assert response.json() == {
        "service": "segment",
        "version": importlib.metadata.version("closeloop"),
        "links": {
            "docs": "/docs",
            "openapi": "/openapi.json",
            "healthz": "/healthz",
            "readyz": "/readyz",
            "metrics": "/metrics",
        },
    }
    assert statuses == [200] * len(links)
    assert _TOKEN not in response.text

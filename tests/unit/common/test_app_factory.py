"""The app factory: health, readiness, metrics, worker lifecycle and the one error format."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import httpx
import pytest
from asyncpg.exceptions import CannotConnectNowError, DeadlockDetectedError
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from libs.common import app as app_module
from libs.common.app import create_app
from libs.common.errors import ApiError
from libs.common.lifecycle import ReadinessCheck, Worker
from libs.common.settings import Settings
from libs.devstack import free_port

# The lifespan configures logging for the whole process.
pytestmark = pytest.mark.usefixtures("restore_logging")


class RecordingWorker:
    """A Worker that writes its starts and stops into a shared journal."""

    def __init__(self, name: str, journal: list[str], *, fail_on_start: bool = False) -> None:
        self.name = name
        self.alive = False
        self._journal = journal
        self._fail_on_start = fail_on_start

    async def start(self) -> None:
        if self._fail_on_start:
            raise RuntimeError(f"{self.name} cannot start")
        self._journal.append(f"start {self.name}")
        self.alive = True

    async def stop(self) -> None:
        self._journal.append(f"stop {self.name}")
        self.alive = False

    def is_alive(self) -> bool:
        return self.alive


class PassingCheck:
    name = "passing"

    async def check(self) -> None:
        return None


class FailingCheck:
    name = "database"

    async def check(self) -> None:
        raise ConnectionRefusedError("connection refused on 127.0.0.1:5432")


class HangingCheck:
    name = "broker"

    async def check(self) -> None:
        await asyncio.Event().wait()


class Signup(BaseModel):
    email: str


def _example_router() -> APIRouter:
    router = APIRouter()

    @router.get("/things/{thing_id}")
    async def get_thing(thing_id: str, limit: int = 10) -> dict[str, str]:
        return {"id": thing_id}

    @router.post("/signups")
    async def sign_up(signup: Signup) -> dict[str, str]:
        return {"email": signup.email}

    @router.post("/segments")
    async def create_segment() -> None:
        raise ApiError(409, "segment_exists", "A segment named vip exists.", field="name")

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret connection string postgres://admin:hunter2@db")

    @router.get("/database-gone")
    async def database_gone() -> None:
        # A real connection attempt to a port where no PostgreSQL listens.
        engine = create_async_engine(f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none")
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        finally:
            await engine.dispose()

    @router.get("/database-silent")
    async def database_silent() -> None:
        # A real statement to a server that takes the connection and never answers (a hung
        # host): asyncpg gives up after its timeout, as after `database_command_timeout_ms`.
        with socket.create_server(("127.0.0.1", 0)) as silent:
            port = silent.getsockname()[1]
            engine = create_async_engine(
                f"postgresql+asyncpg://nobody@127.0.0.1:{port}/none", connect_args={"timeout": 0.2}
            )
            try:
                async with engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
            finally:
                await engine.dispose()

    @router.get("/database-starting")
    async def database_starting() -> None:
        # What asyncpg raises (under SQLAlchemy's wrapper) while PostgreSQL restarts.
        try:
            raise CannotConnectNowError("the database system is starting up")
        except CannotConnectNowError as error:
            raise DBAPIError("SELECT 1", None, error) from error

    @router.get("/deadlock-victim")
    async def deadlock_victim() -> None:
        # What asyncpg raises (under SQLAlchemy's wrapper) in the transaction PostgreSQL chose
        # to roll back to break a deadlock with another one.
        try:
            raise DeadlockDetectedError("deadlock detected")
        except DeadlockDetectedError as error:
            raise DBAPIError("UPDATE profiles", None, error) from error

    return router


def _app(
    *,
    workers: Sequence[Worker] = (),
    readiness_checks: Sequence[ReadinessCheck] = (),
    service_name: str = "test",
) -> FastAPI:
    return create_app(
        Settings(service_name=service_name, log_json=True),
        title="Test service",
        routers=[_example_router()],
        workers=workers,
        readiness_checks=readiness_checks,
    )


@asynccontextmanager
async def _serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client,
    ):
        yield client


async def test_healthz_is_ok_while_every_worker_is_alive() -> None:
    worker = RecordingWorker("relay", [])
    async with _serving(_app(workers=[worker])) as client:
        response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_healthz_names_the_dead_worker() -> None:
    consumer, relay = RecordingWorker("consumer", []), RecordingWorker("relay", [])
    async with _serving(_app(workers=[consumer, relay])) as client:
        consumer.alive = False
        response = await client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"status": "unhealthy", "dead_workers": ["consumer"]}


async def test_readyz_is_ready_when_every_check_passes() -> None:
    async with _serving(_app(readiness_checks=[PassingCheck()])) as client:
        response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"passing": "ok"}}


async def test_readyz_names_the_failing_check_and_its_error() -> None:
    async with _serving(_app(readiness_checks=[PassingCheck(), FailingCheck()])) as client:
        response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "not_ready",
        "checks": {
            "passing": "ok",
            "database": "ConnectionRefusedError: connection refused on 127.0.0.1:5432",
        },
    }


async def test_readyz_fails_a_check_that_does_not_answer_in_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app_module, "_READINESS_TIMEOUT_SECONDS", 0.01)
    async with _serving(_app(readiness_checks=[PassingCheck(), HangingCheck()])) as client:
        response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"] == {"passing": "ok", "broker": "timed out"}


async def test_workers_start_in_order_and_stop_in_reverse() -> None:
    journal: list[str] = []
    workers = [RecordingWorker(name, journal) for name in ("consumer", "relay", "timer")]
    app = _app(workers=workers)

    async with app.router.lifespan_context(app):
        assert journal == ["start consumer", "start relay", "start timer"]

    assert journal[3:] == ["stop timer", "stop relay", "stop consumer"]


async def test_a_worker_failing_to_start_stops_those_already_started() -> None:
    journal: list[str] = []
    workers = [
        RecordingWorker("consumer", journal),
        RecordingWorker("relay", journal),
        RecordingWorker("timer", journal, fail_on_start=True),
    ]
    app = _app(workers=workers)

    with pytest.raises(RuntimeError, match="timer cannot start"):
        async with app.router.lifespan_context(app):
            pytest.fail("the app must not serve when a worker cannot start")

    assert journal == ["start consumer", "start relay", "stop relay", "stop consumer"]


async def test_metrics_label_requests_by_route_template() -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    async with _serving(_app(service_name=service)) as client:
        await client.get("/things/abc")
        await client.get("/things/def")
        await client.get("/no/such/route")
        response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert (
        "closeloop_http_requests_total{"
        f'method="GET",route="/things/{{thing_id}}",service="{service}",status="200"}} 2.0'
    ) in response.text
    assert (
        "closeloop_http_requests_total{"
        f'method="GET",route="unmatched",service="{service}",status="404"}} 1.0'
    ) in response.text
    assert "/things/abc" not in response.text


async def test_metrics_count_an_unexpected_error_as_500() -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    async with _serving(_app(service_name=service)) as client:
        await client.get("/boom")
        response = await client.get("/metrics")

    assert (
        "closeloop_http_requests_total{"
        f'method="GET",route="/boom",service="{service}",status="500"}} 1.0'
    ) in response.text


async def test_unknown_route_answers_404_in_the_error_format() -> None:
    async with _serving(_app()) as client:
        response = await client.get("/no/such/route")

    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found", "message": "Not Found", "field": None}
    }


async def test_invalid_query_parameter_answers_422_naming_the_field() -> None:
    async with _serving(_app()) as client:
        response = await client.get("/things/abc", params={"limit": "many"})

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["field"] == "query.limit"
    assert error["message"].startswith("query.limit: Input should be a valid integer")


async def test_missing_body_field_answers_422_naming_the_field() -> None:
    async with _serving(_app()) as client:
        response = await client.post("/signups", json={})

    assert response.status_code == 422
    assert response.json() == {
        "error": {
            "code": "invalid_request",
            "message": "body.email: Field required",
            "field": "body.email",
        }
    }


async def test_api_error_answers_its_status_code_and_field() -> None:
    async with _serving(_app()) as client:
        response = await client.post("/segments")

    assert response.status_code == 409
    assert response.json() == {
        "error": {
            "code": "segment_exists",
            "message": "A segment named vip exists.",
            "field": "name",
        }
    }


async def test_unexpected_error_answers_500_without_leaking_and_logs_the_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with _serving(_app()) as client:
        with caplog.at_level(logging.ERROR, logger="libs.common.errors"):
            response = await client.get("/boom")

    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal", "message": "An unexpected error occurred.", "field": None}
    }
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    [record] = [r for r in caplog.records if r.name == "libs.common.errors"]
    assert record.exc_info is not None
    assert "hunter2" in str(record.exc_info[1])


@pytest.mark.parametrize("path", ["/database-gone", "/database-silent", "/database-starting"])
async def test_an_unreachable_database_answers_503_with_retry_after_not_500(path: str) -> None:
    async with _serving(_app()) as client:
        response = await client.get(path)

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "unavailable"


async def test_a_transaction_rolled_back_for_a_deadlock_answers_503_with_retry_after() -> None:
    async with _serving(_app()) as client:
        response = await client.get("/deadlock-victim")

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "conflict"

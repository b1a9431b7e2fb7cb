"""The ingest service as a real process on the test stack, and a fresh source per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
import pytest_asyncio

from libs.devstack import free_port
from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack
from tests.integration.ingest.support import ADMIN, SHOP_ORIGIN, CreatedSource
from tests.integration.profile.harness import ProfileService, running_profile_service


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ingest(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServiceProcess]:
    """One ingest process per test module, in its own schema so modules do not share sources;
    pages on SHOP_ORIGIN may call it from a browser."""
    process = ServiceProcess(
        f"ingest_{uuid.uuid4().hex[:8]}",
        "services.ingest",
        {**stack.env(), "CLOSELOOP_INGEST_CORS_ORIGINS": orjson.dumps([SHOP_ORIGIN]).decode()},
        free_port(),
        log_dir=tmp_path_factory.mktemp("ingest-logs"),
    )
    await process.migrate()
    process.start()
    try:
        await process.wait_ready(timeout=60)
        yield process
    finally:
        await process.stop()


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def profile_service(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ProfileService]:
    """The profile service, for the tests that check calls end up on a person's profile; started
    once for the package, and only if a test asks for it."""
    async with running_profile_service(stack, tmp_path_factory) as service:
        yield service


@pytest_asyncio.fixture(loop_scope="session")
async def client(ingest: ServiceProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as http:
        yield http


@pytest_asyncio.fixture(loop_scope="session")
async def source(client: httpx.AsyncClient) -> CreatedSource:
    """A source of this test's own, so no test sees another's calls or keys."""
    response = await client.post("/sources", json={"name": "test"}, headers=ADMIN)
    assert response.status_code == 201, response.text
    body = response.json()
    return CreatedSource(body["id"], body["write_key"])

"""The ingest service as a real process on the test stack, and a fresh source per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from libs.devstack import free_port
from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack
from tests.integration.ingest.support import ADMIN, CreatedSource


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ingest(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServiceProcess]:
    """One ingest process per test module, in its own schema so modules do not share sources."""
    process = ServiceProcess(
        f"ingest_{uuid.uuid4().hex[:8]}",
        "services.ingest",
        stack.env(),
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

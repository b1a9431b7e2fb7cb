"""The profile service as a real process on the test stack, shared by this folder's tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from libs.devstack import free_port
from libs.devstack.pytest_plugin import TEST_ADMIN_TOKEN
from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack
from tests.integration.profile.harness import ProfileService


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def profile_service(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ProfileService]:
    # Its own schema and consumer group, so it reads the whole shared ingest topic from the start.
    name = f"profile_{uuid.uuid4().hex[:8]}"
    process = ServiceProcess(
        name,
        "services.profile",
        {**stack.env(), "CLOSELOOP_KAFKA_SESSION_TIMEOUT_MS": "6000"},
        free_port(),
        log_dir=tmp_path_factory.mktemp("profile-logs"),
    )
    await process.migrate()
    process.start()
    try:
        await process.wait_ready(60)
        headers = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
        async with httpx.AsyncClient(base_url=process.url, headers=headers, timeout=10) as client:
            yield ProfileService(stack, process, client)
    finally:
        await process.stop()

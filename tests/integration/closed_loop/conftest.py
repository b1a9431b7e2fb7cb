"""All seven services as real processes, the fake providers, and a warm-up round of the loop."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from libs.devstack.pytest_plugin import ServiceLauncher
from libs.devstack.stack import Stack
from tests.integration.closed_loop.harness import ClosedLoop
from tests.integration.closed_loop.services import start_loop_services, warm_up
from tests.integration.dispatch.providers import running_providers

_DISPATCH = {
    "CLOSELOOP_DISPATCH_SENDING_LEASE_SECONDS": "5",
    "CLOSELOOP_DISPATCH_PROVIDER_TIMEOUT_SECONDS": "2",
    "CLOSELOOP_DISPATCH_RETRY_BASE_SECONDS": "0.2",
}


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def loop(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ClosedLoop]:
    """The loop, in schemas and consumer groups of its own, warmed up until a call goes round."""
    launcher = ServiceLauncher(stack, tmp_path_factory.mktemp("closed-loop-logs"))
    run = uuid.uuid4().hex[:8]
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    async with running_providers() as (providers, providers_url, smtp_port):
        try:
            processes = await start_loop_services(launcher, run, _DISPATCH)
            clients = {
                name: httpx.AsyncClient(base_url=process.url, headers=admin, timeout=30)
                for name, process in processes.items()
            }
            try:
                created = await clients["ingest"].post("/sources", json={"name": f"web_{run}"})
                assert created.status_code == 201, created.text
                loop = ClosedLoop(
                    clients,
                    processes,
                    providers,
                    providers_url,
                    smtp_port,
                    created.json()["write_key"],
                    stack.kafka_bootstrap,
                )
                await loop.webhook_channel("webhook")
                await loop.email_channel("email")
                print(f"\nclosed loop warm-up: first call round in {await warm_up(loop, run):.1f}s")
                yield loop
            finally:
                for client in clients.values():
                    await client.aclose()
        finally:
            await launcher.stop_all()

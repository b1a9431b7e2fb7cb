"""The seven services exporting their spans to a local OTLP receiver, with the fake providers,
warmed up until a call goes round."""

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
from tests.integration.tracing.otlp import OtlpReceiver, otlp_receiver


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def receiver() -> AsyncIterator[OtlpReceiver]:
    async with otlp_receiver() as running:
        yield running


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def traced_loop(
    stack: Stack, receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ClosedLoop]:
    """The loop with tracing on by the standard variables alone, spans exported every 200 ms."""
    tracing = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    launcher = ServiceLauncher(stack, tmp_path_factory.mktemp("traced-loop-logs"))
    run = uuid.uuid4().hex[:8]
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    async with running_providers() as (providers, providers_url, smtp_port):
        try:
            processes = await start_loop_services(launcher, run, {}, every_env=tracing)
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
                await warm_up(loop, run)
                yield loop
            finally:
                for client in clients.values():
                    await client.aclose()
        finally:
            await launcher.stop_all()

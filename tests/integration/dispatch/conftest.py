"""A dispatch process for a test module, with local providers, warmed up until it sends."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from libs.devstack.pytest_plugin import ServiceLauncher
from libs.devstack.stack import Stack
from tests.events import rendered
from tests.integration.dispatch.harness import DispatchHarness
from tests.integration.dispatch.providers import Providers, running_providers
from tests.integration.support import wait_for

# Receivers run on loopback, which dispatch refuses by default (SSRF).
ALLOW_LOOPBACK = {"CLOSELOOP_DISPATCH_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]'}
FAST = {
    "CLOSELOOP_KAFKA_SESSION_TIMEOUT_MS": "6000",
    "CLOSELOOP_DISPATCH_RETRY_BASE_SECONDS": "0.2",
    "CLOSELOOP_DISPATCH_MAX_ATTEMPTS": "3",
    "CLOSELOOP_DISPATCH_PROVIDER_TIMEOUT_SECONDS": "2",
}


@dataclass
class Dispatch:
    harness: DispatchHarness
    providers: Providers
    base_url: str
    smtp_port: int


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def dispatch(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Dispatch]:
    launcher = ServiceLauncher(stack, tmp_path_factory.mktemp("dispatch-logs"))
    run = uuid.uuid4().hex[:8]
    async with running_providers() as (providers, base_url, smtp_port):
        try:
            process = await launcher(
                "services.dispatch",
                name=f"dispatch_{run}",
                migrate=True,
                env={**ALLOW_LOOPBACK, **FAST},
                ready_timeout=60,
            )
            harness = DispatchHarness(stack, process)
            await warm_up(harness, providers, base_url, run)
            yield Dispatch(harness, providers, base_url, smtp_port)
            await harness.aclose()
        finally:
            await launcher.stop_all()


async def warm_up(harness: DispatchHarness, providers: Providers, base_url: str, run: str) -> None:
    """Return once the consumer has joined its group and messages reach the receiver."""
    name = f"warm_{run}"
    await harness.channel(name, "webhook", {"url": f"{base_url}/hook/{name}", "secret": "s"})
    await harness.publish(rendered(name))

    async def sent() -> bool:
        return len(providers.webhook(name).by_key) == 1

    await wait_for(sent, within=90, what="dispatch to consume and send a first message")

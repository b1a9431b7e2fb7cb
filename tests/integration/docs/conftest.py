"""The seven services as `make up` runs them, on free ports, and the webhook receiver the
quick start sends to: the examples in README.md and docs/ run against these."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from libs.devstack.pytest_plugin import ServiceLauncher
from libs.devstack.services import DEFAULT_PORTS
from libs.devstack.stack import Stack
from libs.devstack.webhook import DEFAULT_PORT as WEBHOOK_PORT
from libs.devstack.webhook import WebhookReceiver, running_receiver
from tests.integration.closed_loop.services import start_loop_services


@dataclass
class DocsStack:
    """Where each of `make up`'s ports is on this stack, and its admin token."""

    addresses: dict[int, str]
    admin_token: str
    receiver: WebhookReceiver


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def docs_stack(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[DocsStack]:
    launcher = ServiceLauncher(stack, tmp_path_factory.mktemp("docs-logs"))
    with running_receiver() as receiver:
        try:
            processes = await start_loop_services(launcher, uuid.uuid4().hex[:8], {})
            addresses = {
                DEFAULT_PORTS[name]: process.url.removeprefix("http://")
                for name, process in processes.items()
            }
            addresses[WEBHOOK_PORT] = receiver.url.removeprefix("http://")
            yield DocsStack(addresses, stack.admin_token, receiver)
        finally:
            await launcher.stop_all()

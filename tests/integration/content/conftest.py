"""One content service process for the folder's tests, warmed up until its consumer renders.

One for the whole folder: each process is its own consumer group reading requests.v1 from the
beginning, so a second one would first have to dead-letter every request of the first.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from libs.devstack.pytest_plugin import ServiceLauncher
from libs.devstack.stack import Stack
from tests.integration.content.harness import (
    ContentHarness,
    email_template,
    facts,
    message_request,
)
from tests.integration.support import wait_for


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def content_service(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ContentHarness]:
    launcher = ServiceLauncher(stack, tmp_path_factory.mktemp("content-logs"))
    run = uuid.uuid4().hex[:8]
    try:
        process = await launcher(
            "services.content",
            name=f"content_{run}",
            migrate=True,
            env={
                "CLOSELOOP_KAFKA_SESSION_TIMEOUT_MS": "6000",
                "CLOSELOOP_HANDLER_RETRY_BACKOFF_MS": "20",
            },
            ready_timeout=60,
        )
        harness = ContentHarness(stack, process)
        await _warm_up(harness, run)
        yield harness
        await harness.aclose()
    finally:
        await launcher.stop_all()


async def _warm_up(harness: ContentHarness, run: str) -> None:
    """Return once the consumer has joined its group and renders (the join takes ~5 s)."""
    template, profile = f"tpl_warm_{run}", f"prf_warm_{run}"
    (await harness.create(email_template(template))).raise_for_status()
    request = message_request(profile, template, profile=facts(email="warm@example.com"))
    await harness.publish(request)

    async def rendering() -> bool:
        return bool(await harness.rendered(request.data.request_id))

    await wait_for(rendering, within=90, what="the content consumer to render a request")

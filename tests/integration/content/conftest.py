"""One content service process for the folder's tests, warmed up until its consumer renders.

One for the whole folder: each process is its own consumer group reading requests.v1 from the
beginning, so a second one would first have to dead-letter every request of the first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from libs.devstack.stack import Stack
from tests.events import facts, requested
from tests.integration.content.harness import ContentHarness, email_template
from tests.integration.support import started_service, wait_for


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def content_service(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ContentHarness]:
    logs = tmp_path_factory.mktemp("content-logs")
    async with started_service(
        stack,
        logs,
        "content",
        env={
            "CLOSELOOP_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "CLOSELOOP_HANDLER_RETRY_BACKOFF_MS": "20",
            # No dispatch here: a template's topic is taken as it is.
            "CLOSELOOP_CONTENT_DISPATCH_URL": "",
        },
    ) as (process, run):
        harness = ContentHarness(stack, process)
        await _warm_up(harness, run)
        yield harness
        await harness.aclose()


async def _warm_up(harness: ContentHarness, run: str) -> None:
    """Return once the consumer has joined its group and renders (the join takes ~5 s)."""
    template, profile = f"tpl_warm_{run}", f"prf_warm_{run}"
    (await harness.create(email_template(template))).raise_for_status()
    request = requested(profile, template, profile=facts(email="warm@example.com"))
    await harness.publish(request)

    async def rendering() -> bool:
        return bool(await harness.rendered(request.data.request_id))

    await wait_for(rendering, within=90, what="the content consumer to render a request")

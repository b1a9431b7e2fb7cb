"""Template references checked against a running content service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from libs.devstack.pytest_plugin import ServiceLauncher
from libs.devstack.stack import Stack
from tests.integration.journey.harness import JourneyHarness, send, unique

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest_asyncio.fixture(loop_scope="session")
async def with_content(
    stack: Stack, service_process: ServiceLauncher
) -> AsyncIterator[JourneyHarness]:
    run = unique("r")[-8:]
    content = await service_process(
        "services.content", name=f"content_j{run}", migrate=True, ready_timeout=60
    )
    journey = await service_process(
        "services.journey",
        name=f"journey_tpl_{run}",
        migrate=True,
        env={"CLOSELOOP_JOURNEY_CONTENT_URL": content.url, "CLOSELOOP_JOURNEY_SEGMENT_URL": ""},
        ready_timeout=60,
    )
    harness = JourneyHarness(stack, journey)
    harness.content_url = content.url
    yield harness
    await harness.aclose()


async def test_a_send_node_must_name_a_template_content_has(
    with_content: JourneyHarness,
) -> None:
    template = unique("tpl_known")
    made = await with_content.http.post(
        f"{with_content.content_url}/templates",
        json={
            "id": template,
            "name": template,
            "channel": "email",
            "variants": [{"id": "a", "subject": "Hi", "html": "<p>Hi</p>"}],
        },
    )
    assert made.status_code == 201, made.text
    graph: dict[str, Any] = {
        "entry": {"event": "signed_up"},
        "start": "send_known",
        "nodes": {
            "send_known": send("send_known", template, "send_coupon"),
            "send_coupon": send("send_coupon", unique("tpl_missing")),
        },
    }
    refused = await with_content.create(unique("jrn_tpl"), graph)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["field"] == "nodes.send_coupon.template_id"

    graph["nodes"]["send_coupon"]["template_id"] = template
    accepted = await with_content.create(unique("jrn_tpl"), graph)
    assert accepted.status_code == 201, accepted.text

"""Segment's and RudderStack's own Python SDKs, unchanged but for the host, deliver to ingest."""

from __future__ import annotations

import asyncio

import pytest
from rudderstack.analytics.client import Client as RudderClient  # type: ignore[import-untyped]
from segment.analytics import Client  # type: ignore[import-untyped]  # ships no types

from libs.common.bus.reader import header
from libs.common.events import decode
from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack
from tests.integration.ingest.support import CreatedSource, ingested, new_id
from tests.integration.profile.harness import ProfileService, unique

pytestmark = pytest.mark.integration


async def test_segment_python_client_identify_and_track_land_on_the_ingest_topic(
    ingest: ServiceProcess, source: CreatedSource, stack: Stack
) -> None:
    errors: list[Exception] = []
    analytics = Client(
        write_key=source.write_key,
        host=ingest.url,
        sync_mode=True,
        max_retries=0,
        on_error=lambda error, _: errors.append(error),
    )
    identify_id, track_id = new_id("sdk"), new_id("sdk")

    def send() -> None:
        analytics.identify("u_sdk", {"email": "li.wei@example.com"}, message_id=identify_id)
        analytics.track("u_sdk", "order_completed", {"revenue": 64.95}, message_id=track_id)

    await asyncio.to_thread(send)
    assert errors == []

    records = await ingested(stack, [identify_id, track_id])
    identify, track = records[identify_id], records[track_id]
    assert (header(identify, "ce_type"), header(track, "ce_type")) == (
        "ingest.identify",
        "ingest.track",
    )
    assert identify.key == track.key == b"u_sdk"
    event = decode(track.key, track.value, track.headers)
    assert event.data.properties == {"revenue": 64.95}
    assert event.data.context["library"]["name"] == "analytics-python"


async def test_rudderstack_python_client_gzips_and_its_identify_traits_reach_the_profile(
    ingest: ServiceProcess, source: CreatedSource, profile_service: ProfileService
) -> None:
    # rudder-sdk-python gzips its batches and sends an identify's traits only in context.traits.
    analytics = RudderClient(
        write_key=source.write_key, host=ingest.url, gzip=True, sync_mode=True, max_retries=0
    )
    user_id = unique("u_rudder")
    traits = {"email": f"{user_id}@example.com", "plan": "premium"}

    def send() -> None:
        analytics.identify(user_id, traits)
        analytics.track(user_id, "order_completed", {"revenue": 64.95})

    await asyncio.to_thread(send)

    profile = await profile_service.wait_for_profile(f"user_id:{user_id}", counted=2)
    assert profile["traits"] == traits
    assert profile["counters"] == {"identify": 1, "order_completed": 1}

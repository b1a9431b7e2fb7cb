"""Segment's analytics-next bundle, as npm ships it, in headless Chromium on a shop's page: its
identify, track, page and batched calls reach the person's profile through ingest, across
origins (CORS) and with the settings ingest serves in place of Segment's CDN."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.devstack.services import ServiceProcess
from tests.integration.browser.chromium import (
    ShopSite,
    answered,
    answered_since,
    chromium_on,
    reported,
    require_sdk,
)
from tests.integration.ingest.support import CreatedSource
from tests.integration.profile.harness import ProfileService, unique
from tests.integration.support import wait_for

pytestmark = pytest.mark.integration


async def test_the_bundles_calls_reach_the_profile(
    site: ShopSite,
    ingest: ServiceProcess,
    source: CreatedSource,
    profile_service: ProfileService,
    tmp_path: Path,
) -> None:
    require_sdk("@segment/analytics-next")
    user_id = unique("u_ajs")
    page = site.url(
        "analytics-next.html", ingest=ingest.url, writeKey=source.write_key, userId=user_id
    )

    before = await answered(ingest)

    site.reports.clear()
    async with chromium_on(page, tmp_path / "chromium.log"):
        await wait_for(reported(site), within=60, what="the page to report its calls sent")
        assert site.reports == [{"ok": True}], site.reports
        profile = await profile_service.wait_for_profile(f"user_id:{user_id}", counted=5)

    assert profile["traits"] == {"email": f"{user_id}@example.com", "plan": "premium"}
    assert profile["counters"] == {
        "identify": 2,
        "Product Viewed": 1,
        "Oolong": 1,
        "Product Added": 1,
    }
    # Each instance loaded its settings from ingest; the first sent one call a request, to the
    # type's short path, the batching one its two calls in one.
    assert await answered_since(ingest, before) == {
        ("GET", "/v1/projects/{write_key}/settings", "200"): 2,
        ("POST", "/v1/i", "200"): 1,
        ("POST", "/v1/t", "200"): 1,
        ("POST", "/v1/p", "200"): 1,
        ("POST", "/v1/b", "200"): 1,
    }

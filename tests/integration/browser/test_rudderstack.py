"""RudderStack's JavaScript SDK, as npm ships it, in headless Chromium on a shop's page: it loads
its source config from ingest and sends identify, track and page, one call a request or batched,
and they reach the person's profile. Its calls differ from Segment's: JSON with the write key as
Basic auth (so a preflight), the client's time as `originalTimestamp`, traits in
`context.traits`, full paths (`/v1/track`, `/v1/batch`)."""

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

_CALLS = {
    False: ["/v1/identify", "/v1/track", "/v1/page"],
    True: ["/v1/batch"],
}


@pytest.mark.parametrize("batched", [False, True], ids=["a_request_each", "batched"])
async def test_the_sdks_calls_reach_the_profile(
    batched: bool,
    site: ShopSite,
    ingest: ServiceProcess,
    source: CreatedSource,
    profile_service: ProfileService,
    tmp_path: Path,
) -> None:
    require_sdk("@rudderstack/analytics-js")
    user_id = unique("u_rs")
    page = site.url(
        "rudderstack.html",
        ingest=ingest.url,
        writeKey=source.write_key,
        userId=user_id,
        batched="1" if batched else "0",
    )
    before = await answered(ingest)

    site.reports.clear()
    async with chromium_on(page, tmp_path / "chromium.log"):
        await wait_for(reported(site), within=60, what="the page to report its calls made")
        assert site.reports == [{"ok": True}], site.reports
        profile = await profile_service.wait_for_profile(f"user_id:{user_id}", counted=3)

    assert profile["traits"] == {"email": f"{user_id}@example.com", "plan": "premium"}
    assert profile["counters"] == {"identify": 1, "Product Viewed": 1, "Sencha": 1}
    get_config = ("GET", "/v1/sourceConfig/", "200")
    calls = {("POST", route, "200"): 1 for route in _CALLS[batched]}
    # Each call's preflight (JSON with Basic auth) is answered by CORS, before any route.
    assert await answered_since(ingest, before) == {get_config: 1, **calls}

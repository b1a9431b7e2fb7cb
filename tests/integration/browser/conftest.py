"""A shop's web site on one origin, and ingest on another that lets the site's pages call it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
import pytest_asyncio

from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack
from tests.integration.browser.chromium import ShopSite, shop_site
from tests.integration.ingest.support import ADMIN, CreatedSource
from tests.integration.profile.harness import ProfileService, running_profile_service
from tests.integration.support import started_service


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def site() -> AsyncIterator[ShopSite]:
    async with shop_site() as served:
        yield served


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def ingest(
    stack: Stack, site: ShopSite, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServiceProcess]:
    """Ingest on its own port (so another origin than the site's), open to the site's pages."""
    env = {"CLOSELOOP_INGEST_CORS_ORIGINS": orjson.dumps([site.origin]).decode()}
    logs = tmp_path_factory.mktemp("ingest-logs")
    async with started_service(stack, logs, "ingest", env) as (process, _):
        yield process


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def profile_service(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ProfileService]:
    async with running_profile_service(stack, tmp_path_factory) as service:
        yield service


@pytest_asyncio.fixture(loop_scope="session")
async def source(ingest: ServiceProcess) -> CreatedSource:
    """A source of this test's own, whose write key the page sends with."""
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as client:
        response = await client.post("/sources", json={"name": "shop"}, headers=ADMIN)
    assert response.status_code == 201, response.text
    body = response.json()
    return CreatedSource(body["id"], body["write_key"])

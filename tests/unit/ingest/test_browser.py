"""What a browser's SDK meets before any call is published: CORS, short paths, SDK settings."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from services.ingest.app import create
from services.ingest.browser import settings_document, tracking_endpoint
from services.ingest.settings import IngestSettings

SHOP = "https://shop.example.com"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}


@pytest_asyncio.fixture
async def app_client() -> AsyncIterator[httpx.AsyncClient]:
    """The app without its lifespan: nothing here reaches the database or the broker."""
    app = create(IngestSettings(ingest_cors_origins=[SHOP]))
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
        yield client


async def test_preflight_from_an_allowed_origin_is_answered_with_cors_headers(
    app_client: httpx.AsyncClient,
) -> None:
    response = await app_client.options("/v1/track", headers={"Origin": SHOP, **PREFLIGHT})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SHOP
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed


async def test_preflight_from_another_origin_gets_no_allow_origin(
    app_client: httpx.AsyncClient,
) -> None:
    origin = {"Origin": "https://elsewhere.example.com"}
    response = await app_client.options("/v1/track", headers={**origin, **PREFLIGHT})
    assert response.status_code >= 400
    assert "access-control-allow-origin" not in response.headers


async def test_management_routes_allow_no_origin(app_client: httpx.AsyncClient) -> None:
    response = await app_client.options("/sources", headers={"Origin": SHOP, **PREFLIGHT})
    assert "access-control-allow-origin" not in response.headers


async def test_errors_of_an_allowed_origin_are_readable_by_its_page(
    app_client: httpx.AsyncClient,
) -> None:
    response = await app_client.post("/v1/t", content=b"{}", headers={"Origin": SHOP})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == SHOP


def test_by_default_no_origin_is_allowed() -> None:
    assert IngestSettings().ingest_cors_origins == []


@pytest.mark.parametrize("path", ["t", "i", "p", "s", "g", "a", "b"])
async def test_analytics_next_short_paths_are_routes(
    app_client: httpx.AsyncClient, path: str
) -> None:
    # No write key: the route exists and asks for one (a path that did not would be a 404).
    response = await app_client.post(f"/v1/{path}", content=b"{}")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("base_url", "endpoint"),
    [
        ("http://127.0.0.1:8101/", ("http", "127.0.0.1:8101/v1")),
        ("https://track.example.com", ("https", "track.example.com/v1")),
        ("https://example.com/ingest/", ("https", "example.com/ingest/v1")),
    ],
)
def test_tracking_endpoint_is_the_v1_path_under_the_base_url(
    base_url: str, endpoint: tuple[str, str]
) -> None:
    assert tracking_endpoint(base_url) == endpoint


def test_settings_document_points_the_segment_destination_at_ingest() -> None:
    document = settings_document("wk_1", "https", "track.example.com/v1")
    destination = document["integrations"]["Segment.io"]
    assert destination["apiKey"] == "wk_1"
    assert (destination["protocol"], destination["apiHost"]) == ("https", "track.example.com/v1")
    assert list(document["integrations"]) == ["Segment.io"]
    assert document["metrics"]["sampleRate"] == 0

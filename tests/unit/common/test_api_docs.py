"""Every service's `/docs` and `/redoc` work offline (their scripts and styles come from the
service itself, not a CDN), and its OpenAPI declares how each route is authorised."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from libs.common.settings import Settings
from services.attribution.app import create as create_attribution
from services.attribution.settings import AttributionSettings
from services.content.app import create as create_content
from services.content.settings import ContentSettings
from services.dispatch.app import create as create_dispatch
from services.dispatch.settings import DispatchSettings
from services.ingest.app import create as create_ingest
from services.ingest.settings import IngestSettings
from services.journey.app import create as create_journey
from services.journey.settings import JourneySettings
from services.profile.app import create as create_profile
from services.profile.settings import ProfileSettings
from services.segment.app import create as create_segment
from services.segment.settings import SegmentSettings

_SERVICES: dict[str, tuple[Callable[[Settings], FastAPI], type[Settings]]] = {
    "ingest": (create_ingest, IngestSettings),
    "profile": (create_profile, ProfileSettings),
    "segment": (create_segment, SegmentSettings),
    "journey": (create_journey, JourneySettings),
    "content": (create_content, ContentSettings),
    "dispatch": (create_dispatch, DispatchSettings),
    "attribution": (create_attribution, AttributionSettings),
}
# Every address a page names: attributes, CSS url(), and Swagger UI's own settings.
_ADDRESSES = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)|\burl\s*:\s*["']([^"']+)""")
_ADMIN = {"AdminToken": {"type": "http", "scheme": "bearer"}}


@pytest_asyncio.fixture(params=sorted(_SERVICES))
async def client(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """A service's app, not started: its pages and OpenAPI need no broker or database."""
    create, settings = _SERVICES[request.param]
    transport = httpx.ASGITransport(app=create(settings()))
    async with httpx.AsyncClient(transport=transport, base_url="http://closeloop.test") as c:
        yield c


def _addresses(page: str) -> list[str]:
    return [first or second for first, second in _ADDRESSES.findall(page)]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_everything_from_the_service(
    client: httpx.AsyncClient, page: str
) -> None:
    answer = await client.get(page)
    assert answer.status_code == 200
    addresses = _addresses(answer.text)
    assert any(address.endswith(".js") for address in addresses), addresses
    assert not re.search(r"https?://", answer.text), "the page names another host"
    for address in addresses:
        assert address.startswith("/"), address
        asset = await client.get(address)
        assert asset.status_code == 200, address
        assert asset.content, address


async def test_swagger_ui_asks_no_validator_for_a_badge(client: httpx.AsyncClient) -> None:
    page = (await client.get("/docs")).text
    assert '"validatorUrl": null' in page


async def test_management_routes_declare_the_admin_token(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    assert {name: _shape(scheme) for name, scheme in schemes.items()}.items() >= _ADMIN.items()
    secured = [
        operation
        for path, item in spec["paths"].items()
        for operation in item.values()
        if {"AdminToken": []} in operation.get("security", [])
    ]
    assert secured, "no operation names the admin token"


async def test_tracking_routes_declare_the_write_key() -> None:
    create, settings = _SERVICES["ingest"]
    spec = create(settings()).openapi()
    assert _shape(spec["components"]["securitySchemes"]["WriteKey"]) == {
        "type": "http",
        "scheme": "basic",
    }
    for path in ("/v1/track", "/v1/identify", "/v1/batch", "/v1/import"):
        assert spec["paths"][path]["post"]["security"] == [{"WriteKey": []}], path
    assert spec["paths"]["/v1/import/{job_id}"]["get"]["security"] == [{"WriteKey": []}]
    assert spec["paths"]["/sources"]["post"]["security"] == [{"AdminToken": []}]


def _shape(scheme: dict[str, Any]) -> dict[str, Any]:
    return {key: scheme[key] for key in ("type", "scheme")}

"""What Segment's browser SDK (analytics-next) sends reaches ingest, and a person's profile.

The bodies are the SDK's own shape: JSON sent as `text/plain` (so the browser skips the
preflight) with the write key in the body, to the type's first letter under `/v1`.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from libs.common.bus.reader import header
from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack
from tests.integration.ingest.support import SHOP_ORIGIN, CreatedSource, ingested, new_id
from tests.integration.ingest.test_tracking_api import CALLS
from tests.integration.profile.harness import ProfileService, unique

pytestmark = pytest.mark.integration

_LIBRARY = {"name": "analytics.js", "version": "npm:next-1.81.0"}


def _as_analytics_next(kind: str, source: CreatedSource, **fields: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "messageId": new_id("ajs"),
        "anonymousId": "5d8e2c1a-anon",
        "timestamp": "2025-03-14T09:26:53.120Z",
        "sentAt": "2025-03-14T09:26:53.500Z",
        "context": {"library": _LIBRARY, "page": {"path": "/p/oolong"}},
        "integrations": {},
        "_metadata": {"bundled": ["Segment.io"], "unbundled": [], "bundledIds": []},
        "writeKey": source.write_key,
        **fields,
    }


async def _post_as_text(client: httpx.AsyncClient, path: str, body: Any) -> httpx.Response:
    headers = {"Content-Type": "text/plain", "Origin": SHOP_ORIGIN}
    return await client.post(path, content=orjson.dumps(body), headers=headers)


def _preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }


async def test_preflight_from_the_allowed_origin_gets_the_cors_headers(
    client: httpx.AsyncClient,
) -> None:
    response = await client.options("/v1/track", headers=_preflight(SHOP_ORIGIN))
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == SHOP_ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed


async def test_preflight_from_another_origin_gets_no_cors_headers(
    client: httpx.AsyncClient,
) -> None:
    response = await client.options("/v1/track", headers=_preflight("https://evil.example.com"))
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_each_short_path_accepts_its_call(
    client: httpx.AsyncClient, source: CreatedSource, stack: Stack
) -> None:
    sent: dict[str, str] = {}
    for kind, fields in CALLS.items():
        call = _as_analytics_next(kind, source, userId="u_short", **fields)
        response = await _post_as_text(client, f"/v1/{kind[0]}", call)
        assert response.status_code == 200, f"/v1/{kind[0]}: {response.text}"
        assert response.headers["access-control-allow-origin"] == SHOP_ORIGIN
        sent[call["messageId"]] = kind
    batched = _as_analytics_next("track", source, event="added_to_cart")
    del batched["writeKey"]
    batch = {"batch": [batched], "writeKey": source.write_key, "sentAt": batched["sentAt"]}
    assert (await _post_as_text(client, "/v1/b", batch)).status_code == 200
    sent[batched["messageId"]] = "track"

    records = await ingested(stack, sent)
    assert {m: header(r, "ce_type") for m, r in records.items()} == {
        message_id: f"ingest.{kind}" for message_id, kind in sent.items()
    }
    # The write key is how the call got in, not part of what it says.
    assert all(source.write_key.encode() not in (r.value or b"") for r in records.values())


async def test_settings_document_points_the_sdk_back_at_ingest(
    client: httpx.AsyncClient, source: CreatedSource, ingest: ServiceProcess
) -> None:
    response = await client.get(
        f"/v1/projects/{source.write_key}/settings", headers={"Origin": SHOP_ORIGIN}
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == SHOP_ORIGIN
    destination = response.json()["integrations"]["Segment.io"]
    assert destination["apiKey"] == source.write_key
    assert f"{destination['protocol']}://{destination['apiHost']}" == f"{ingest.url}/v1"

    # Where the SDK would send a track call with these settings.
    call = _as_analytics_next("track", source, event="viewed_product")
    url = f"{destination['protocol']}://{destination['apiHost']}/t"
    assert (await _post_as_text(client, url, call)).status_code == 200


async def test_settings_of_an_unknown_write_key_are_a_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/projects/wk_nosuchkey/settings")
    assert response.status_code == 404
    assert response.json()["error"]["field"] == "writeKey"


async def test_text_plain_identify_with_body_write_key_reaches_the_profile(
    client: httpx.AsyncClient, source: CreatedSource, profile_service: ProfileService
) -> None:
    user_id = unique("u_browser")
    traits = {"email": f"{user_id}@example.com", "plan": "premium"}
    call = _as_analytics_next("identify", source, userId=user_id, traits=traits)
    response = await _post_as_text(client, "/v1/i", call)
    assert response.status_code == 200, response.text

    profile = await profile_service.wait_for_profile(f"user_id:{user_id}")
    assert profile["traits"] == traits

"""Auth and the public edges: every management route of every service refuses a missing or
wrong token and a source's write key; tracking tokens cannot be forged or pointed elsewhere;
webhooks cannot reach private addresses; templates cannot reach Python or the file system."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from libs.common.tracking import TrackingToken, sign
from services.dispatch.app import create as create_dispatch
from services.dispatch.settings import DispatchSettings
from tests.integration.hostile.conftest import SERVICES, Hostile

pytestmark = pytest.mark.integration

_METHODS = ("get", "post", "put", "patch", "delete")
_OPEN = frozenset({"/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/redoc"})
_PUBLIC_PREFIXES: dict[str, tuple[str, ...]] = {
    # Segment routes: a source's write key, not the admin token; WeChat's callbacks: its
    # signature with the account's token.
    "ingest": ("/v1/", "/wechat/{app_id}/"),
    # What recipients and providers call: links, preference pages and receipts.
    "dispatch": ("/c/", "/o/", "/u/", "/p/", "/receipts/"),
}
_PRIVATE_WEBHOOKS = (
    "http://10.0.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/hook",
    "http://127.0.0.1/hook",
)
_TEMPLATE_ESCAPES = (
    "{{ profile.__class__ }}",
    "{{ profile.__class__.__init__.__globals__ }}",
    "{{ self }}",
    "{% include '/etc/passwd' %}",
    "{% render 'x' %}",
    "{% render '../../../../etc/passwd' %}",
)
# What a leak would look like: a Python repr, a class, the password file.
_LEAKS = re.compile(r"<class |object at 0x|__globals__|root:.*:0:0:|Traceback|<function |\{'")


async def _management_routes(hostile: Hostile) -> list[tuple[str, str, str]]:
    """(service, method, path with plausible values) for every route its OpenAPI lists."""
    routes = []
    for service in SERVICES:
        spec = (await hostile.loop.clients[service].get("/openapi.json")).json()
        for path, item in spec["paths"].items():
            if path in _OPEN or path.startswith(_PUBLIC_PREFIXES.get(service, ("\0",))):
                continue
            for method in item:
                if method in _METHODS:
                    routes.append((service, method.upper(), re.sub(r"{[^}]+}", "x1", path)))
    return routes


async def _refusals(
    hostile: Hostile, headers: dict[str, str], allowed: set[int]
) -> tuple[int, list[str]]:
    routes = await _management_routes(hostile)
    wrong = []
    async with httpx.AsyncClient(timeout=10) as stranger:
        for service, method, path in routes:
            body: dict[str, Any] | None = {} if method in {"POST", "PUT", "PATCH"} else None
            response = await stranger.request(
                method,
                hostile.loop.processes[service].url + path,
                json=body,
                headers=headers,
            )
            if response.status_code not in allowed:
                wrong.append(f"{service} {method} {path} -> {response.status_code}")
    return len(routes), wrong


async def test_every_management_route_refuses_a_missing_token(hostile: Hostile) -> None:
    count, wrong = await _refusals(hostile, {}, {401})
    print(f"\n{count} management routes refuse a missing token")
    assert count > 30
    assert not wrong, "\n".join(wrong)


async def test_every_management_route_refuses_a_wrong_token(hostile: Hostile) -> None:
    for token in ("wrong", hostile.stack.admin_token + "x", hostile.stack.admin_token[:-1]):
        _, wrong = await _refusals(hostile, {"Authorization": f"Bearer {token}"}, {401, 403})
        assert not wrong, "\n".join(wrong)


async def test_a_sources_write_key_opens_no_management_route(hostile: Hostile) -> None:
    key = hostile.loop.write_key
    basic = base64.b64encode(f"{key}:".encode()).decode()
    for authorization in (f"Bearer {key}", f"Basic {basic}"):
        _, wrong = await _refusals(hostile, {"Authorization": authorization}, {401, 403})
        assert not wrong, f"{authorization.split()[0]}: " + "\n".join(wrong)


async def test_a_click_token_cannot_be_forged_or_pointed_elsewhere(hostile: Hostile) -> None:
    dispatch = hostile.loop.dispatch
    secret = hostile.stack.tracking_secret
    key = f"jrn_x:v1:send:prf_{uuid.uuid4().hex}:1"
    genuine = sign(TrackingToken(key, "click", "https://shop.example.com/p/1"), secret)
    body, signature = genuine.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    swapped_body = (
        base64.urlsafe_b64encode(json.dumps({**payload, "u": "https://evil.example/"}).encode())
        .rstrip(b"=")
        .decode()
    )
    forged = {
        "signed with another secret": sign(
            TrackingToken(key, "click", "https://evil.example/"), "not-the-secret"
        ),
        "URL swapped, signature kept": f"{swapped_body}.{signature}",
        "signature dropped": body,
        "two signatures": f"{genuine}.{signature}",
        "empty signature": f"{body}.",
        "garbage": "%00..%ff",
    }
    for what, token in forged.items():
        for action in ("c", "o", "u"):
            response = await dispatch.get(f"/{action}/{token}", follow_redirects=False)
            seen = f"{what} on /{action}/: {response.status_code} {response.text[:200]}"
            assert 400 <= response.status_code < 500, seen
            assert "location" not in response.headers, seen
    # A genuine click token used as an unsubscribe or open link is not one.
    for action in ("o", "u"):
        response = await dispatch.get(f"/{action}/{genuine}", follow_redirects=False)
        assert 400 <= response.status_code < 500, f"click token on /{action}/: {response.text}"
    # A genuine token for a message dispatch never sent redirects nowhere.
    response = await dispatch.get(f"/c/{genuine}", follow_redirects=False)
    assert 400 <= response.status_code < 500 and "location" not in response.headers


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def dispatch_without_allow_list(hostile: Hostile) -> AsyncIterator[httpx.AsyncClient]:
    """Dispatch's app with the default settings (no allow-listed network), over the run's
    schema. In-process and without its lifespan: the channels API needs no consumer, and a
    second consumer group on deliveries.v1 would send the loop's messages a second time."""
    settings = DispatchSettings(
        service_name=hostile.loop.processes["dispatch"].name,
        environment=hostile.stack.environment,
        kafka_bootstrap=hostile.stack.kafka_bootstrap,
        database_url=hostile.stack.database_url,
        admin_token=hostile.stack.admin_token,
        tracking_secret=hostile.stack.tracking_secret,
    )
    assert settings.dispatch_webhook_allowed_networks == []
    app = create_dispatch(settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://dispatch",
        headers={"Authorization": f"Bearer {hostile.stack.admin_token}"},
    ) as client:
        yield client


async def test_a_webhook_cannot_point_at_a_private_address(
    hostile: Hostile, dispatch_without_allow_list: httpx.AsyncClient
) -> None:
    for url in _PRIVATE_WEBHOOKS:
        name = f"ssrf_{uuid.uuid4().hex[:8]}"
        channel = {"name": name, "kind": "webhook", "config": {"url": url, "secret": "s"}}
        created = await dispatch_without_allow_list.post("/channels", json=channel)
        assert created.status_code == 422, f"{url}: {created.status_code} {created.text}"
        assert created.json()["error"]["message"], created.text
        replaced = await dispatch_without_allow_list.put(f"/channels/{name}", json=channel)
        assert replaced.status_code in {404, 422}, f"{url}: {replaced.text}"


async def test_a_template_cannot_reach_python_or_the_file_system(hostile: Hostile) -> None:
    content = hostile.loop.content
    answers: dict[str, str] = {}
    for source in _TEMPLATE_ESCAPES:
        template_id = f"tpl_escape_{uuid.uuid4().hex[:10]}"
        created = await content.post(
            "/templates",
            json={
                "id": template_id,
                "name": "escape",
                "channel": "webhook",
                "variants": [{"id": "only", "payload": {"text": source}}],
            },
        )
        assert created.status_code < 500, f"{source}: {created.text}"
        if created.status_code != 201:
            assert created.status_code == 422, f"{source}: {created.text}"
            answers[source] = f"create {created.status_code} {created.json()['error']['code']}"
            continue
        preview = await content.post(
            f"/templates/{template_id}/preview",
            json={"profile": {"traits": {"first_name": "Li"}}},
        )
        _no_leak(preview, source)
        assert preview.status_code in {200, 422}, f"{source}: {preview.text}"
        answers[source] = f"preview {preview.status_code} {preview.text[:120]}"
        if preview.status_code == 200:
            rendered: Any = preview.json()["fields"]
            assert rendered["payload"]["text"] in {"", None}, f"{source}: {rendered}"
    print("\n" + "\n".join(f"{source:<45} -> {answer}" for source, answer in answers.items()))


def _no_leak(response: httpx.Response, source: str) -> None:
    assert response.status_code < 500, f"{source}: {response.text}"
    assert not _LEAKS.search(response.text), f"{source} leaked: {response.text[:500]}"

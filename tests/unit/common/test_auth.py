"""`require_admin`: the management APIs' bearer token."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, Depends, FastAPI
from pydantic import SecretStr

from libs.common.app import create_app
from libs.common.auth import require_admin
from libs.common.settings import Settings

_TOKEN = "s3cret-admin-token"


def _app(admin_token: str) -> FastAPI:
    router = APIRouter(dependencies=[Depends(require_admin)])

    @router.get("/segments")
    async def list_segments() -> list[str]:
        return ["vip"]

    return create_app(
        Settings(service_name="test", admin_token=SecretStr(admin_token)),
        title="Test service",
        routers=[router],
    )


async def _get(app: FastAPI, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path, headers=headers)


async def test_right_token_is_let_through() -> None:
    response = await _get(_app(_TOKEN), "/segments", {"Authorization": f"Bearer {_TOKEN}"})

    assert response.status_code == 200
    assert response.json() == ["vip"]


async def test_missing_token_is_refused_with_a_bearer_challenge() -> None:
    response = await _get(_app(_TOKEN), "/segments")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"


async def test_wrong_token_is_refused_with_a_bearer_challenge() -> None:
    response = await _get(_app(_TOKEN), "/segments", {"Authorization": "Bearer not-the-token"})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"


async def test_token_under_another_scheme_is_refused() -> None:
    response = await _get(_app(_TOKEN), "/segments", {"Authorization": f"Basic {_TOKEN}"})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


async def test_unset_token_refuses_every_management_call() -> None:
    response = await _get(_app(""), "/segments", {"Authorization": "Bearer "})

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "admin_token_unset"
    assert "CLOSELOOP_ADMIN_TOKEN" in error["message"]


async def test_operations_endpoints_need_no_token() -> None:
    app = _app(_TOKEN)

    for path in ("/healthz", "/readyz", "/metrics", "/docs"):
        response = await _get(app, path)
        assert response.status_code == 200, path

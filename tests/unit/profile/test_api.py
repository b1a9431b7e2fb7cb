"""The profile routes refuse a NUL in an identifier and a `before` past bigint with a 422."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from libs.common.auth import require_admin
from libs.common.errors import install_error_handlers
from services.profile.api import profile_router
from services.profile.settings import ProfileSettings


def _unreachable(*args: Any) -> Any:
    raise AssertionError("validation should refuse the request before the database")


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(profile_router(ProfileSettings(), _unreachable, _unreachable))  # type: ignore[arg-type]
    app.dependency_overrides[require_admin] = lambda: None
    return TestClient(app)


@pytest.mark.parametrize("identifier", ["user_id:\x00", "email:a\x00@b.c"])
def test_an_identifier_with_a_nul_is_invalid(client: TestClient, identifier: str) -> None:
    response = client.get("/profiles", params={"identifier": identifier})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "identifier"


def test_a_before_cursor_past_bigint_is_invalid(client: TestClient) -> None:
    response = client.get("/profiles/prf_x/events", params={"before": 2**63})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "query.before"

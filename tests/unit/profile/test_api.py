"""The profile routes refuse a NUL in an identifier and a `before` past bigint with a 422; the
backtest refuses what it cannot judge with a 422 naming the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from libs.common.api import Database
from libs.common.auth import require_admin
from libs.common.errors import install_error_handlers
from services.profile.api import fits_from_state, predictions_router, profile_router
from services.profile.features import FeatureRules
from services.profile.settings import ProfileSettings


def _unreachable(*args: Any) -> Any:
    raise AssertionError("validation should refuse the request before the database")


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(profile_router)
    settings = ProfileSettings()
    app.state.settings = settings
    app.state.feature_rules = FeatureRules.from_settings(settings)
    app.state.database = Database(_unreachable, settings.schema_name)  # type: ignore[arg-type]
    app.dependency_overrides[require_admin] = lambda: None
    return TestClient(app)


@pytest.mark.parametrize("identifier", ["user_id:\x00", "email:a\x00@b.c"])
def test_an_identifier_with_a_nul_is_invalid(client: TestClient, identifier: str) -> None:
    response = client.get("/profiles", params={"identifier": identifier})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "identifier"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"trait": "plan:p\x00"}, "trait"),
        ({"trait": "no-colon"}, "trait"),
        ({"after": "prf_\x00"}, "after"),
        ({"trait": [f"t{n}:v" for n in range(11)]}, "query.trait"),
    ],
)
def test_a_profile_search_beyond_what_it_can_hold_is_invalid(
    client: TestClient, params: dict[str, Any], field: str
) -> None:
    response = client.get("/profiles", params=params)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == field


def test_a_before_cursor_past_bigint_is_invalid(client: TestClient) -> None:
    response = client.get("/profiles/prf_x/events", params={"before": 2**63})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "query.before"


class _FewPurchases:
    """Fits that find too few purchase histories, as a new workspace has."""

    churn_horizon_days = 90.0

    async def backtest(self, cutoff: datetime, horizon_days: float, *, with_outcomes: bool) -> Any:
        raise ValueError("BG/NBD needs at least 20 purchase histories, got 3")


@pytest.fixture
def predictions_client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(predictions_router)
    app.dependency_overrides[fits_from_state] = _FewPurchases
    app.dependency_overrides[require_admin] = lambda: None
    return TestClient(app)


A_YEAR_AGO = (datetime.now(UTC) - timedelta(days=365)).isoformat()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"horizon_days": 90}, "body.cutoff"),
        ({"cutoff": "last spring"}, "body.cutoff"),
        ({"cutoff": A_YEAR_AGO, "horizon_days": 0}, "body.horizon_days"),
        ({"cutoff": A_YEAR_AGO, "horizon_days": -5}, "body.horizon_days"),
        ({"cutoff": datetime.now(UTC).isoformat()}, "cutoff"),  # the horizon has not passed
        ({"cutoff": A_YEAR_AGO, "horizon_days": 90}, "cutoff"),  # too few histories before it
    ],
)
def test_a_backtest_it_cannot_judge_is_a_422_naming_the_field(
    predictions_client: TestClient, body: dict[str, Any], field: str
) -> None:
    response = predictions_client.post("/predictions/backtest", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field

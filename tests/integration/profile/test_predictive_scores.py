"""Predictive scores over the real services: years of orders imported through ingest, a fit,
scores on every buyer, a segment on churn risk, re-scoring on a purchase, and a backtest.

Ingest, profile and segment run as processes, each in its own schema and consumer group. Thirty
people's `Order Completed` tracks, with their original timestamps up to two years old, go
through ingest's `/v1/batch`: ten frequent buyers who stopped 400 days ago, ten who still buy
every ten days, and ten who bought once.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from libs.common import topics
from libs.common.events import ProfileUpdated
from libs.devstack.stack import Stack
from tests.integration.loop.harness import Loop, running_loop, unique
from tests.integration.support import wait_for

pytestmark = pytest.mark.integration

ORDER = "Order Completed"
# Midnight UTC today: purchases at noon and a backtest cutoff at midnight never share a day.
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
CHURN_RISK_AT_LEAST = 0.5
SCORES = (
    "p_alive",
    "expected_purchases_30d",
    "expected_purchases_90d",
    "expected_purchases_365d",
    "expected_value_365d",
    "churn_risk",
)


@dataclass
class Buyer:
    user_id: str
    kind: str  # lapsed, recent, once
    purchases: list[datetime]
    profile_id: str = ""


@dataclass
class Scoring:
    """The three running services and the profile service's schema."""

    loop: Loop
    profile_schema: str

    async def members(self, segment_id: str) -> set[str]:
        response = await self.loop.segment.get(
            f"/segments/{segment_id}/members", params={"limit": 1000}
        )
        response.raise_for_status()
        return {member["profile_id"] for member in response.json()["members"]}

    async def scored(self) -> dict[str, dict[str, float]]:
        """Every profile the profile service has scored, with its scores as stored."""
        dsn = self.loop.stack.database_url.replace("postgresql+asyncpg://", "postgresql://")
        connection = await asyncpg.connect(dsn)
        try:
            rows = await connection.fetch(
                f"SELECT id, (state -> 'predicted' -> 'values')::text AS scores "
                f"FROM {self.profile_schema}.profiles WHERE state -> 'predicted' <> 'null'"
            )
        finally:
            await connection.close()
        return {row["id"]: json.loads(row["scores"]) for row in rows}

    async def announced_by_time(self, profile_ids: set[str], since: datetime) -> set[str]:
        """The profiles among these whose `profile.updated` since then no event caused."""
        return {
            event.data.profile_id
            for event in await self.loop.events_on(topics.PROFILE)
            if isinstance(event.data, ProfileUpdated)
            and event.data.profile_id in profile_ids
            and event.data.caused_by is None
            and event.data.occurred_at >= since
        }


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def scoring(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Scoring]:
    async with running_loop(
        stack,
        tmp_path_factory.mktemp("scoring-logs"),
        # Small re-score batches, so a re-score takes several transactions.
        profile_env={"CLOSELOOP_PROFILE_PREDICTION_RESCORE_BATCH": "7"},
    ) as (loop, processes):
        yield Scoring(loop, processes["profile"].name)


def _noon(days_ago: int) -> datetime:
    return TODAY - timedelta(days=days_ago) + timedelta(hours=12)


def _buyers() -> list[Buyer]:
    rng = random.Random(20261207)
    buyers = [
        Buyer(unique("lapsed"), "lapsed", [_noon(day) for day in range(700, 399, -10)])
        for _ in range(10)
    ]
    buyers += [
        Buyer(unique("recent"), "recent", [_noon(day) for day in range(310, 9, -10)])
        for _ in range(10)
    ]
    buyers += [Buyer(unique("once"), "once", [_noon(rng.randint(30, 600))]) for _ in range(10)]
    return buyers


async def _import_orders(loop: Loop, buyer: Buyer, rng: random.Random) -> None:
    """The buyer's orders, with their original timestamps, in one `/v1/batch` call."""
    batch = [
        {
            "type": "track",
            "userId": buyer.user_id,
            "event": ORDER,
            "properties": {"revenue": round(rng.uniform(20, 80), 2), "currency": "USD"},
            "timestamp": moment.isoformat(),
            "messageId": unique("order"),
        }
        for moment in buyer.purchases
    ]
    response = await loop.ingest.post(
        "/v1/batch", json={"batch": batch}, auth=httpx.BasicAuth(loop.write_key, "")
    )
    assert response.status_code == 200, response.text


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def buyers(scoring: Scoring) -> list[Buyer]:
    """Every buyer's orders imported and counted on their profile."""
    loop, rng = scoring.loop, random.Random(7)
    people = _buyers()
    for buyer in people:
        await _import_orders(loop, buyer, rng)
    for buyer in people:
        profile = await loop.wait_for_profile(
            f"user_id:{buyer.user_id}", counted={ORDER: len(buyer.purchases)}, within=60
        )
        buyer.profile_id = profile["id"]
    return people


async def _scores(loop: Loop, profile_id: str) -> dict[str, Any]:
    response = await loop.profile.get(f"/profiles/{profile_id}")
    response.raise_for_status()
    predictions: dict[str, Any] = response.json()["predictions"]
    return predictions


async def test_a_fit_scores_every_buyer_and_a_churn_risk_segment_picks_the_lapsed(
    scoring: Scoring, buyers: list[Buyer]
) -> None:
    loop = scoring.loop
    unscored = await _scores(loop, buyers[0].profile_id)
    assert unscored["scores"] is None and unscored["unscored_because"]
    segment_id = unique("seg_churning")
    churning = {"score": "churn_risk", "op": "gte", "value": CHURN_RISK_AT_LEAST}
    await loop.create_segment(segment_id, churning)

    response = await loop.profile.post("/predictions/fit")
    assert response.status_code == 200, response.text
    fit = response.json()
    assert fit["error"] is None and fit["rescored_at"] is not None
    assert fit["profiles"] >= len(buyers) and fit["repeat_buyers"] >= 20
    assert fit["rescored"] >= len(buyers) and fit["announced"] >= len(buyers)
    assert set(fit["purchase_model"]) == {"r", "alpha", "a", "b"}
    model = (await loop.profile.get("/predictions/model")).json()
    assert model["current"]["fit_id"] == fit["fit_id"] == model["latest"]["fit_id"]

    risk: dict[str, float] = {}
    for buyer in buyers:
        scores = (await _scores(loop, buyer.profile_id))["scores"]
        assert scores is not None and scores["fit_id"] == fit["fit_id"], buyer
        assert all(scores[name] >= 0 for name in SCORES)
        risk[buyer.profile_id] = scores["churn_risk"]
    lapsed = {b.profile_id for b in buyers if b.kind == "lapsed"}
    recent = {b.profile_id for b in buyers if b.kind == "recent"}
    assert min(risk[p] for p in lapsed) > 0.9, risk
    assert max(risk[p] for p in recent) < 0.2, risk

    # Of these buyers, the segment holds exactly those scored at or above the threshold: the
    # lapsed frequent buyers, some one-time buyers, and no recent buyer. (Other tests' buyers
    # on the shared topics may be scored and segmented too.)
    mine = set(risk)
    at_risk = {profile_id for profile_id, value in risk.items() if value >= CHURN_RISK_AT_LEAST}
    assert lapsed <= at_risk and not recent & at_risk
    assert mine <= (await scoring.scored()).keys()  # stored as the API shows them

    async def segmented() -> bool:
        return await scoring.members(segment_id) & mine == at_risk

    await wait_for(segmented, within=30, what="the churn-risk segment to hold the at-risk")
    preview = await loop.segment.post("/segments/preview", json={"conditions": churning})
    assert preview.json()["count"] >= len(at_risk)

    # The same purchases fitted again: only the profiles whose rounded scores moved (the
    # dropout parameters of so few histories drift a little between fits) are announced.
    before = await scoring.scored()
    again = (await loop.profile.post("/predictions/fit")).json()
    after = await scoring.scored()
    assert again["fit_id"] > fit["fit_id"] and again["rescored"] >= len(mine)
    moved = {profile_id for profile_id in mine if after[profile_id] != before[profile_id]}
    since = datetime.fromisoformat(again["fitted_at"])
    assert await scoring.announced_by_time(mine, since) == moved
    assert len(moved) < len(mine)


async def test_a_purchase_is_scored_at_once_with_the_fitted_models(
    scoring: Scoring, buyers: list[Buyer]
) -> None:
    loop = scoring.loop
    fitted = (await loop.profile.get("/predictions/model")).json()["current"]
    assert fitted is not None, "runs after the fit of the test above"
    comeback = next(buyer for buyer in buyers if buyer.kind == "lapsed")
    before = (await _scores(loop, comeback.profile_id))["scores"]
    await loop.send(
        "track",
        userId=comeback.user_id,
        event=ORDER,
        properties={"revenue": 55.0},
        timestamp=datetime.now(UTC).isoformat(),
    )
    counted = {ORDER: len(comeback.purchases) + 1}
    await loop.wait_for_profile(f"user_id:{comeback.user_id}", counted=counted)
    after = (await _scores(loop, comeback.profile_id))["scores"]
    assert after["fit_id"] == fitted["fit_id"]
    assert datetime.fromisoformat(after["scored_at"]) > datetime.fromisoformat(before["scored_at"])
    assert after["churn_risk"] < CHURN_RISK_AT_LEAST <= before["churn_risk"]


async def test_a_backtest_judges_predictions_against_what_followed_the_cutoff(
    scoring: Scoring, buyers: list[Buyer]
) -> None:
    loop = scoring.loop
    cutoff, horizon = TODAY - timedelta(days=200), 90
    body = {"cutoff": cutoff.isoformat(), "horizon_days": horizon, "include_profiles": True}
    response = await loop.profile.post("/predictions/backtest", json=body)
    assert response.status_code == 200, response.text
    report = response.json()
    outcomes = {outcome["profile_id"]: outcome for outcome in report["outcomes"]}
    judged = [buyer for buyer in buyers if min(buyer.purchases) < cutoff]  # bought before it
    assert {b.profile_id for b in judged} <= outcomes.keys()
    assert report["profiles"] == len(outcomes) >= len(judged)
    end = cutoff + timedelta(days=horizon)
    for buyer in judged:
        bought = sum(1 for moment in buyer.purchases if cutoff <= moment < end)
        assert outcomes[buyer.profile_id]["actual_purchases"] == bought, buyer.kind
    assert report["actual_total"] >= sum(outcomes[b.profile_id]["actual_purchases"] for b in judged)
    assert len(report["calibration"]) == 8
    assert report["churn_auc"] is not None and 0 <= report["churn_auc"] <= 1
    recent = [outcomes[b.profile_id] for b in judged if b.kind == "recent"]
    lapsed = [outcomes[b.profile_id] for b in judged if b.kind == "lapsed"]
    assert min(o["predicted_purchases"] for o in recent) > max(
        o["predicted_purchases"] for o in lapsed
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cutoff": "2025-01-01T00:00:00Z", "horizon_days": 0}, "body.horizon_days"),
        ({"horizon_days": 90}, "body.cutoff"),
        ({"cutoff": "2001-01-01T00:00:00Z", "horizon_days": 90}, "cutoff"),  # nobody had bought
    ],
)
async def test_a_backtest_it_cannot_judge_is_refused_naming_the_field(
    scoring: Scoring, body: dict[str, Any], field: str
) -> None:
    response = await scoring.loop.profile.post("/predictions/backtest", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


async def test_a_segment_on_an_unknown_lifecycle_stage_is_refused(scoring: Scoring) -> None:
    body = {"name": "customers", "conditions": {"all": [{"lifecycle_stage": "customer"}]}}
    response = await scoring.loop.segment.post("/segments", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "conditions.all[0].lifecycle_stage"
    assert "at_risk" in error["message"]

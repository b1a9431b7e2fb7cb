"""The attribution service as a process over the real broker and database."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests.events import behaviour, erasure
from tests.integration.attribution.harness import AttributionHarness, campaign_visit, clicked, sent
from tests.integration.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def test_a_purchase_is_credited_once_to_the_messages_that_touched_it(
    attribution_service: AttributionHarness,
) -> None:
    service = attribution_service
    profile, journey, purchase = unique("prf_buyer"), unique("jrn"), unique("purchase")
    definition = unique("cnv_purchase")
    await service.define(
        definition,
        purchase,
        value_property="revenue",
        currency_property="currency",
        attribution_model="linear",
        window="P7D",
    )
    now = datetime.now(UTC)
    first, second, stale = unique("msg"), unique("msg"), unique("msg")
    await service.publish(
        sent(profile, stale, journey, now - timedelta(days=9)),
        sent(profile, first, journey, now - timedelta(hours=5)),
        sent(profile, second, journey, now - timedelta(hours=2)),
        clicked(profile, second, journey, now - timedelta(hours=1)),
        sent(profile, unique("msg_after"), journey, now + timedelta(minutes=5)),
    )
    # Outcomes and behaviours travel on different topics: a conversion is credited to the
    # touchpoints attribution holds when it handles the purchase (docs/attribution.md).
    await wait_for(lambda: _touchpoints(service, profile, 5), within=30, what="the touchpoints")
    order = behaviour(profile, purchase, at=now, properties={"revenue": 129.9, "currency": "CNY"})
    await service.publish(order)

    async def credited() -> bool:
        return len(await service.credits(profile, definition)) == 2

    await wait_for(credited, within=30, what="two conversion.attributed credits")
    credits = sorted(await service.credits(profile, definition), key=lambda c: c.message_id)
    assert {c.message_id for c in credits} == {first, second}
    assert {(c.value, c.currency, c.credit_share, c.attribution_model) for c in credits} == {
        (Decimal("129.9"), "CNY", 0.5, "linear")
    }
    assert len({c.conversion_id for c in credits}) == 1
    assert credits[0].journey is not None and credits[0].journey.journey_id == journey

    # The same purchase again, and re-emitted under a new ce_id: neither is credited twice.
    await service.publish(order, dataclasses.replace(order, id=str(uuid.uuid4())))
    # A marker after them on the same partition: once it is handled, so are the duplicates.
    marker, marker_event = unique("cnv_marker"), unique("marker")
    # Credited to no message (no opens), so the journey's numbers stay the purchase's alone.
    await service.define(marker, marker_event, touch_types=["message.opened"])
    await service.publish(behaviour(profile, marker_event, at=now))
    await _converted_once(service, profile, marker)
    assert len(await service.credits(profile, definition)) == 2

    async def reported() -> bool:
        response = await service.http.get("/reports/journey", params={"journey_id": journey})
        rows = response.json()["rows"]
        return len(rows) == 1 and rows[0]["converted"] == pytest.approx(1.0)

    await wait_for(reported, within=30, what="the journey's report")
    response = await service.http.get("/reports/journey", params={"journey_id": journey})
    (row,) = response.json()["rows"]
    assert (row["journey_id"], row["sent"], row["clicked"]) == (journey, 4, 1)
    assert row["revenue"] == {"CNY": "129.9"}
    assert row["rates"]["conversion"] == pytest.approx(0.25)
    totals = await service.conversion_totals(definition)
    assert totals is not None
    assert (totals["attributed"], totals["unattributed"], totals["value"]) == (
        1,
        0,
        {"CNY": "129.9"},
    )


async def _converted_once(service: AttributionHarness, profile: str, marker: str) -> None:
    """Wait until the marker conversion, published after the duplicates, was handled."""

    async def handled() -> bool:
        totals = await service.conversion_totals(marker)
        return totals is not None and totals["attributed"] + totals["unattributed"] == 1

    await wait_for(handled, within=30, what=f"the marker conversion of {profile}")


async def test_a_conversion_without_touchpoints_is_unattributed_and_emits_nothing(
    attribution_service: AttributionHarness,
) -> None:
    service = attribution_service
    profile, signup = unique("prf_organic"), unique("signed_up")
    definition = unique("cnv_signup")
    await service.define(definition, signup, filter=[{"property": "plan", "op": "exists"}])
    now = datetime.now(UTC)
    await service.publish(
        behaviour(profile, signup, at=now - timedelta(minutes=1)),  # filtered out: no plan
        behaviour(profile, signup, at=now, properties={"plan": "basic"}),
    )

    async def recorded() -> bool:
        totals = await service.conversion_totals(definition)
        return totals is not None and totals["unattributed"] == 1

    await wait_for(recorded, within=30, what="the unattributed conversion")
    totals = await service.conversion_totals(definition)
    assert totals is not None and totals["attributed"] == 0
    assert await service.credits(profile) == []


async def test_erasure_removes_the_profiles_rows(attribution_service: AttributionHarness) -> None:
    service = attribution_service
    profile, journey, event = unique("prf_erased"), unique("jrn"), unique("purchase")
    definition = unique("cnv_erased")
    await service.define(definition, event)
    now = datetime.now(UTC)
    await service.publish(
        sent(profile, unique("msg"), journey, now - timedelta(hours=1)),
        campaign_visit(profile, now - timedelta(minutes=30), "google", "cpc"),
        behaviour(profile, event, at=now),
    )

    async def stored() -> bool:
        return await service.rows_of(profile) == 3

    await wait_for(stored, within=30, what="the touchpoint, campaign touch and conversion rows")
    await service.publish(erasure(profile))

    async def erased() -> bool:
        return await service.rows_of(profile) == 0

    await wait_for(erased, within=30, what="the erased profile's rows gone")


async def test_campaign_visits_compete_with_messages_in_the_credit_report(
    attribution_service: AttributionHarness,
) -> None:
    """Paths [email, paid_search] → 100 EUR, [social, email] → 50 EUR, [social] → nothing.

    The chain: start→email 1/3, →social 2/3; email→paid_search 1/2, →conversion 1/2;
    social→email 1/2, →null 1/2. P = 2/3; without email 0 (effect 1), without paid_search or
    social 1/3 (effect 1/2). Markov credit sums to 2 x the removal shares: email 1,
    paid_search 1/2, social 1/2 (c1 and c2 split half and half; unit tests:
    test_credit_report.py).
    """
    service = attribution_service
    # A day long past, which no other test's touches share.
    day = datetime(2024, 2, 1, 12, tzinfo=UTC) + timedelta(minutes=uuid.uuid4().int % 1000)
    first, second, lost = unique("prf_paid"), unique("prf_social"), unique("prf_lost")
    journey, purchase, definition = unique("jrn"), unique("purchase"), unique("cnv_credit")
    await service.define(
        definition, purchase, value_property="revenue", currency="EUR", window="P1D"
    )
    await service.publish(
        sent(first, unique("msg"), journey, day - timedelta(hours=3)),
        campaign_visit(first, day - timedelta(hours=2, minutes=30), "closeloop", "email"),
        campaign_visit(first, day - timedelta(hours=2), "google", "cpc"),
        campaign_visit(first, day - timedelta(hours=1, minutes=50), "google", "cpc"),
        behaviour(first, purchase, at=day, properties={"revenue": 100}),
        campaign_visit(second, day - timedelta(hours=6), "facebook", "social"),
        sent(second, unique("msg"), journey, day - timedelta(hours=5)),
        behaviour(second, purchase, at=day, properties={"revenue": 50}),
        campaign_visit(lost, day - timedelta(hours=4), "facebook", "social"),
    )
    scope = {
        "conversion_id": definition,
        "from": (day - timedelta(days=1)).isoformat(),
        "to": (day + timedelta(days=2)).isoformat(),
    }
    found: dict[str, Any] = {}

    async def complete() -> bool:
        response = await service.http.get("/reports/credit", params={**scope, "model": "markov"})
        assert response.status_code == 200, response.text
        found.update(response.json())
        earned = {row["channel"]: row["attributed_conversions"] for row in found["rows"]}
        return (found["conversions"], found["null_paths"]) == (2, 1) and earned == pytest.approx(
            {"email": 1.0, "paid_search": 0.5, "social": 0.5}
        )

    await wait_for(complete, within=30, what="every touch and conversion in the credit report")
    assert (found["model"], found["by"], found["lookback"]) == ("markov", "channel", "P1D")
    assert (found["attributed"], found["conversion_probability"]) == (2, pytest.approx(2 / 3))
    assert found["credit_residual"] == pytest.approx(0.0, abs=1e-6)
    rows = {row["channel"]: row for row in found["rows"]}
    assert {c: (r["removal_effect"], r["removal_share"]) for c, r in rows.items()} == {
        "email": pytest.approx((1.0, 0.5)),
        "paid_search": pytest.approx((0.5, 0.25)),
        "social": pytest.approx((0.5, 0.25)),
    }
    assert {c: float(r["revenue"]["EUR"]) for c, r in rows.items()} == pytest.approx(
        {"email": 75.0, "paid_search": 50.0, "social": 25.0}
    )
    last = await service.http.get("/reports/credit", params={**scope, "model": "last_touch"})
    earned = {row["channel"]: row["attributed_conversions"] for row in last.json()["rows"]}
    assert earned == {"email": 1.0, "paid_search": 1.0, "social": 0.0}
    by_journey = await service.http.get(
        "/reports/credit", params={**scope, "model": "linear", "by": "journey"}
    )
    journeys = {row["journey_id"]: row for row in by_journey.json()["rows"]}
    assert journeys.keys() == {journey, None}
    assert journeys[journey]["removal_effect"] is None


async def test_insights_answer(attribution_service: AttributionHarness) -> None:
    insights = await attribution_service.http.get("/insights")
    assert insights.status_code == 200, insights.text
    assert isinstance(insights.json()["insights"], list)


async def test_a_send_hour_that_lags_the_others_is_an_insight(
    attribution_service: AttributionHarness,
) -> None:
    """150 sends at 03:00 UTC with 3 clicks, 150 at 10:00 with 45: 03:00 is worth avoiding."""
    service, journey = attribution_service, unique("jrn_hours")
    yesterday = datetime.now(UTC).replace(minute=10, second=0, microsecond=0) - timedelta(days=1)
    events = []
    for hour, clicks in ((3, 3), (10, 45)):
        at = yesterday.replace(hour=hour)
        for n in range(150):
            profile, message = unique("prf_hours"), unique("msg_hours")
            events.append(sent(profile, message, journey, at))
            if n < clicks:
                events.append(clicked(profile, message, journey, at + timedelta(minutes=30)))
    await service.publish(*events)
    found: list[dict[str, Any]] = []

    async def reported() -> bool:
        # Until every outcome is handled, an insight may already speak from part of them.
        response = await service.http.get("/insights", params={"journey_id": journey})
        found[:] = [i for i in response.json()["insights"] if i["kind"] == "hour_underperforms"]
        return any(
            (i["evidence"]["sent"], i["evidence"]["others_sent"], i["evidence"]["others_clicked"])
            == (150, 150, 45)
            for i in found
        )

    await wait_for(reported, within=60, what="the lagging send hour in /insights")
    [insight] = found
    assert insight["evidence"] == {
        "hour_utc": 3,
        "sent": 150,
        "clicked": 3,
        "click_rate": 0.02,
        "others_sent": 150,
        "others_clicked": 45,
        "others_click_rate": 0.3,
    }


async def test_bad_definitions_and_requests_are_refused(
    attribution_service: AttributionHarness,
) -> None:
    http = attribution_service.http
    bad = await http.post("/conversions", json={"name": "x", "event": "y", "window": "P1M"})
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "body.window"
    missing = await http.get("/conversions/cnv_missing_definition")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "conversion_not_found"
    dimension = await http.get("/reports/country")
    assert dimension.status_code == 422
    backwards = await http.get(
        "/reports/channel",
        params={"from": "2025-03-02T00:00:00Z", "to": "2025-03-01T00:00:00Z"},
    )
    assert backwards.status_code == 422
    assert backwards.json()["error"]["code"] == "invalid_range"
    model = await http.get("/reports/credit", params={"model": "shapley"})
    assert model.status_code == 422
    assert model.json()["error"]["field"] == "query.model"
    future = await http.get(
        "/reports/credit", params={"model": "linear", "from": "2999-01-01T00:00:00Z"}
    )
    assert (future.status_code, future.json()["error"]["code"]) == (422, "invalid_range")
    unknown = await http.get(
        "/reports/credit", params={"model": "markov", "conversion_id": "cnv_missing_definition"}
    )
    assert unknown.status_code == 404


async def _touchpoints(service: AttributionHarness, profile_id: str, expected: int) -> bool:
    return await service.touchpoints_of(profile_id) == expected


async def test_a_persons_touches_and_credits_and_the_days_of_a_journey_are_read(
    attribution_service: AttributionHarness,
) -> None:
    service = attribution_service
    profile, journey, purchase = unique("prf_reader"), unique("jrn"), unique("purchase")
    definition = unique("cnv_read")
    await service.define(
        definition,
        purchase,
        value_property="revenue",
        currency_property="currency",
        attribution_model="linear",
        window="P7D",
    )
    now = datetime.now(UTC)
    early, late = unique("msg"), unique("msg")
    await service.publish(
        sent(profile, early, journey, now - timedelta(days=2)),
        sent(profile, late, journey, now - timedelta(hours=2)),
        clicked(profile, late, journey, now - timedelta(hours=1)),
    )
    await wait_for(lambda: _touchpoints(service, profile, 3), within=30, what="the touchpoints")
    await service.publish(
        behaviour(profile, purchase, at=now, properties={"revenue": 80, "currency": "EUR"})
    )

    async def converted() -> bool:
        answer = (await service.http.get(f"/profiles/{profile}/touches")).json()
        return len(answer["conversions"]) == 1

    await wait_for(converted, within=30, what="the person's conversion")
    answer = (await service.http.get(f"/profiles/{profile}/touches")).json()
    assert [(t["message_id"], t["outcome"]) for t in answer["touches"]] == [
        (late, "message.clicked"),
        (late, "message.sent"),
        (early, "message.sent"),
    ]
    (conversion,) = answer["conversions"]
    assert (conversion["definition_id"], conversion["value"], conversion["currency"]) == (
        definition,
        "80",
        "EUR",
    )
    assert sorted((c["message_id"], c["share"]) for c in conversion["credits"]) == sorted(
        [(early, 0.5), (late, 0.5)]
    )
    limited = (await service.http.get(f"/profiles/{profile}/touches?limit=1")).json()
    assert [t["outcome"] for t in limited["touches"]] == ["message.clicked"]

    daily = await service.http.get("/reports/daily", params={"journey_id": journey})
    assert daily.status_code == 200, daily.text
    days = daily.json()["days"]
    listed = [day["day"] for day in days]
    assert listed == sorted(set(listed))
    sent_days = {(now - timedelta(days=2)).date(), (now - timedelta(hours=2)).date()}
    assert {d.isoformat() for d in sent_days} <= set(listed)
    assert sum(day["sent"] for day in days) == 2
    assert sum(day["clicked"] for day in days) == 1
    assert sum(Decimal(day["revenue"].get("EUR", "0")) for day in days) == Decimal("80")
    assert sum(day["converted"] for day in days) == pytest.approx(1.0)
    refused = await service.http.get("/reports/daily", params={"from": "yesterday"})
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "query.from"

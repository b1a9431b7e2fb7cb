"""The contact policy over the whole loop: priorities arbitrate a cap between two journeys and a
broadcast, transactional messages go through a full cap, and bad settings are 422s by field.

Counted at the webhook receiver, which keeps every request it gets (no deduplication).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio

from libs.common import topics
from libs.common.events import MessageDeferred, MessageSuppressed
from tests.integration.closed_loop.harness import ClosedLoop
from tests.integration.support import read_events, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

PEOPLE = 1_000
ONE_A_DAY = [{"channel": "*", "max": 1, "window": "P1D"}]
# Long enough that every message of the test is held until the test lets them go at once.
HOLD_EVERYTHING = {"window": "PT1H"}


@pytest_asyncio.fixture(loop_scope="session")
async def policy(loop: ClosedLoop) -> AsyncIterator[None]:
    """The policy a test sets is the loop's until the test ends; then no policy again."""
    yield
    await loop.call("dispatch", "PUT", "/policies", json={})


async def _segment(loop: ClosedLoop, name: str) -> str:
    """A segment of the people whose trait `contend` is `name`."""
    segment = f"seg_{name}"
    await loop.call(
        "segment",
        "POST",
        "/segments",
        json={"id": segment, "name": name, "conditions": {"trait": "contend", "value": name}},
    )
    return segment


async def _identify(loop: ClosedLoop, name: str, count: int) -> None:
    """`count` new people in the segment of `name`, in one batch call."""
    batch = [
        {"type": "identify", "userId": f"u_{name}_{n}", "traits": {"contend": name}}
        for n in range(count)
    ]
    response = await loop.ingest.post(
        "/v1/batch", json={"batch": batch}, auth=httpx.BasicAuth(loop.write_key, "")
    )
    assert response.status_code == 200, response.text


async def _template(loop: ClosedLoop, name: str) -> str:
    template = f"tpl_{name}"
    await loop.call(
        "content",
        "POST",
        "/templates",
        json={
            "id": template,
            "name": name,
            "channel": "webhook",
            "variants": [{"id": "only", "payload": {"person": "{{ profile.id }}"}}],
        },
    )
    return template


async def _journey(loop: ClosedLoop, name: str, segment: str, contact: dict[str, Any]) -> str:
    journey = f"jrn_{name}"
    template = await _template(loop, name)
    await loop.call(
        "journey",
        "POST",
        "/journeys",
        json={
            "id": journey,
            "name": name,
            "entry": {"segment": segment},
            "contact": contact,
            "start": "hello",
            "nodes": {"hello": {"type": "send", "channel": "webhook", "template_id": template}},
        },
    )
    await loop.call("journey", "POST", f"/journeys/{journey}/publish")
    return journey


async def _broadcast(loop: ClosedLoop, name: str, segment: str, contact: dict[str, Any]) -> str:
    broadcast = f"brd_{name}"
    await loop.call(
        "journey",
        "POST",
        "/broadcasts",
        json={
            "id": broadcast,
            "name": name,
            "segment": segment,
            "channel": "webhook",
            "template_id": await _template(loop, name),
            "per_minute": 1_000_000,
            "contact": contact,
        },
    )
    return broadcast


async def _entered(loop: ClosedLoop, journey: str, count: int) -> None:
    """Wait until the journey entered `count` people: journey has heard their memberships."""

    async def all_in() -> bool:
        stats = await loop.call("journey", "GET", f"/journeys/{journey}/stats")
        return int(stats["nodes"].get("hello", {}).get("entered", 0)) >= count

    await wait_for(all_in, within=120, what=f"{journey} to enter {count} people", every=0.25)


def _received(loop: ClosedLoop, journeys: set[str]) -> Counter[tuple[str, str]]:
    """(journey, profile) of every request the receiver got from these journeys, raw."""
    found: Counter[tuple[str, str]] = Counter()
    for request in loop.providers.webhook("webhook").raw:
        body = orjson.loads(request["body"])
        journey = body["journey"]["journey_id"]
        if journey in journeys:
            found[journey, body["profile_id"]] += 1
    return found


async def _metric(loop: ClosedLoop, name: str, label: str = "") -> float:
    response = await loop.dispatch.get("/metrics")
    response.raise_for_status()
    return sum(
        float(line.rpartition(" ")[2])
        for line in response.text.splitlines()
        if line.startswith(name) and label in line
    )


async def test_two_journeys_and_a_broadcast_competing_send_one_each_the_highest_priority(
    loop: ClosedLoop, policy: None
) -> None:
    name = f"contend_{uuid.uuid4().hex[:8]}"
    document = {"caps": ONE_A_DAY, "arbitration": HOLD_EVERYTHING}
    await loop.call("dispatch", "PUT", "/policies", json=document)
    held = await _metric(loop, "closeloop_dispatch_held_messages_total")
    dropped = await _metric(loop, "closeloop_dispatch_arbitration_losses_total", "dropped")
    deferred = await _metric(loop, "closeloop_dispatch_arbitration_losses_total", "deferred")
    segment = await _segment(loop, name)
    dropping = await _journey(loop, f"{name}_a", segment, {"priority": 50})
    deferring = await _journey(loop, f"{name}_b", segment, {"priority": 20, "on_conflict": "defer"})
    await _identify(loop, name, PEOPLE)
    await _entered(loop, dropping, PEOPLE)
    await _entered(loop, deferring, PEOPLE)
    winner = await _broadcast(loop, f"{name}_c", segment, {"priority": 90})

    async def all_held() -> bool:
        return await _metric(loop, "closeloop_dispatch_held_messages_total") - held >= 3 * PEOPLE

    await wait_for(all_held, within=120, what="every message held in the ledger", every=0.25)
    # The window ends for everyone now: each person's three messages are decided together.
    await loop.call("dispatch", "PUT", "/policies", json={"caps": ONE_A_DAY})
    journeys = {dropping, deferring, winner}

    async def losses() -> tuple[float, float]:
        return (
            await _metric(loop, "closeloop_dispatch_arbitration_losses_total", "dropped") - dropped,
            await _metric(loop, "closeloop_dispatch_arbitration_losses_total", "deferred")
            - deferred,
        )

    async def all_decided() -> bool:
        sends = sum(_received(loop, journeys).values())
        return sum(await losses()) >= 2 * PEOPLE and sends >= PEOPLE

    await wait_for(all_decided, within=120, what="every message decided", every=0.25)
    received = _received(loop, journeys)
    assert Counter(journey for journey, _ in received) == {winner: PEOPLE}
    assert set(received.values()) == {1}, "one message each, counted raw"
    assert await losses() == (PEOPLE, PEOPLE), "the first journey's dropped, the second's deferred"

    async def suppressions_counted() -> bool:
        stats = await loop.call("journey", "GET", f"/journeys/{dropping}/stats")
        return int(stats["nodes"]["hello"]["outcomes"].get("suppressed", 0)) == PEOPLE

    await wait_for(suppressions_counted, within=60, what=f"{dropping} to hear its suppressions")

    async def deferrals_counted() -> bool:
        stats = await loop.call("journey", "GET", f"/journeys/{deferring}/stats")
        return int(stats["nodes"]["hello"]["outcomes"].get("deferred", 0)) == PEOPLE

    await wait_for(deferrals_counted, within=60, what=f"{deferring} to hear its deferrals")
    stats = await loop.call("journey", "GET", f"/journeys/{deferring}/stats")
    assert stats["nodes"]["hello"]["outcomes"] == {"deferred": PEOPLE}, "deferred, no more yet"
    outcomes = [event.data for _, event in await read_events(loop.bootstrap, topics.OUTCOMES)]
    lost = [
        data
        for data in outcomes
        if isinstance(data, MessageSuppressed) and data.journey.journey_id == dropping
    ]
    put_off = [
        data
        for data in outcomes
        if isinstance(data, MessageDeferred) and data.journey.journey_id == deferring
    ]
    assert len(lost) == PEOPLE
    assert len(put_off) == PEOPLE
    assert {(d.reason, d.won_by and d.won_by.journey.journey_id) for d in put_off} == {
        ("frequency_cap", winner)
    }
    # Until the winner leaves the day's window: decided again about a day later.
    assert all(d.until - d.occurred_at > timedelta(hours=23) for d in put_off)
    assert {(s.reason, s.won_by and s.won_by.journey.journey_id) for s in lost} == {
        ("frequency_cap", winner)
    }
    assert {s.won_by and s.won_by.priority for s in lost} == {90}


async def test_a_transactional_message_goes_through_a_full_cap(
    loop: ClosedLoop, policy: None
) -> None:
    name = f"receipt_{uuid.uuid4().hex[:8]}"
    await loop.call("dispatch", "PUT", "/policies", json={"caps": ONE_A_DAY})
    segment = await _segment(loop, name)
    first = await _journey(loop, f"{name}_first", segment, {})
    await _identify(loop, name, 1)
    await _entered(loop, first, 1)

    async def first_sent() -> bool:
        return sum(_received(loop, {first}).values()) == 1

    await wait_for(first_sent, within=60, what="the marketing message that fills the cap")
    offer = await _broadcast(loop, f"{name}_offer", segment, {"priority": 100})
    receipt = await _broadcast(loop, f"{name}_receipt", segment, {"transactional": True})

    async def progress(broadcast: str) -> dict[str, Any]:
        answer: dict[str, Any] = await loop.call("journey", "GET", f"/broadcasts/{broadcast}")
        return dict(answer["progress"])

    async def both_decided() -> bool:
        suppressed, sent = (await progress(offer))["suppressed"], (await progress(receipt))["sent"]
        return (int(suppressed), int(sent)) == (1, 1)

    await wait_for(both_decided, within=60, what="the offer suppressed and the receipt sent")
    received = _received(loop, {first, offer, receipt})
    assert sorted(journey for journey, _ in received) == sorted([first, receipt])
    assert set(received.values()) == {1}
    assert len({profile for _, profile in received}) == 1


async def test_bad_contact_settings_are_refused_naming_the_field(loop: ClosedLoop) -> None:
    name = f"bad_{uuid.uuid4().hex[:8]}"
    template = await _template(loop, name)
    segment = await _segment(loop, name)
    journey = {
        "name": name,
        "entry": {"segment": segment},
        "start": "hello",
        "nodes": {"hello": {"type": "send", "channel": "webhook", "template_id": template}},
    }
    broadcast = {"name": name, "segment": segment, "channel": "webhook", "template_id": template}
    refused = [
        ("journey", "/journeys", {**journey, "contact": {"priority": 101}}, "contact.priority"),
        ("journey", "/journeys", {**journey, "contact": {"on_conflict": 1}}, "contact.on_conflict"),
        (
            "journey",
            "/broadcasts",
            {**broadcast, "contact": {"on_conflict": "retry"}},
            "body.contact.on_conflict",
        ),
        (
            "journey",
            "/broadcasts",
            {**broadcast, "contact": {"priority": "high"}},
            "body.contact.priority",
        ),
        (
            "dispatch",
            "/policies",
            {"arbitration": {"window": "P2D"}},
            "arbitration.window",
        ),
        ("dispatch", "/policies", {"arbitration": {"max_defer": "soon"}}, "arbitration.max_defer"),
    ]
    for service, path, body, field in refused:
        method = "PUT" if path == "/policies" else "POST"
        response = await loop.clients[service].request(method, path, json=body)
        assert response.status_code == 422, (path, body, response.text)
        assert response.json()["error"]["field"] == field, (path, body, response.text)

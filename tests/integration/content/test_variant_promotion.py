"""The contextual variant bandit over the real broker and database: variants chosen in the
person's context and logged with their propensity, outcomes counted in that context, an
evaluation that promotes a clear winner with an insight, and a promoted winner whose runner-up
is then only explored at the floor."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest

from libs.common.events import MessageClicked, MessageRendered, MessageSent, ProfileSnapshot
from services.content.bandit import HOUR_BANDS
from services.content.experiments import BANDIT
from tests.events import facts, requested
from tests.integration.content.harness import ContentHarness, email_template, outcome
from tests.integration.support import wait_for

pytestmark = pytest.mark.integration

_CONTEXT = "stage=active|category=tea|channel=email|band="


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def _facts(profile_id: str) -> ProfileSnapshot:
    """What each request carries about its person: the context is theirs, not content's copy."""
    return facts(
        email=f"{profile_id}@example.com",
        timezone="Asia/Shanghai",
        lifecycle_stage="active",
        top_category="tea",
    )


async def _send(
    content: ContentHarness, template: str, profiles: Sequence[str], count: int
) -> list[MessageRendered]:
    """`count` requests for the template, spread over the profiles: the messages content
    rendered for them, in order."""
    requests = [
        requested(person, template, profile=_facts(person))
        for person in (profiles[i % len(profiles)] for i in range(count))
    ]
    await content.publish(*requests)
    ids = [request.data.request_id for request in requests]

    async def all_rendered() -> bool:
        return len(await content.rendered_for(ids)) == count

    await wait_for(all_rendered, within=120, what=f"{count} messages rendered", every=0.5)
    rendered = await content.rendered_for(ids)
    return [rendered[request_id] for request_id in ids]


async def test_a_clear_winner_is_promoted_and_its_runner_up_is_explored_at_the_floor_only(
    content_service: ContentHarness,
) -> None:
    template = _unique("tpl")
    body = email_template(template)
    body["variants"].append({**body["variants"][0], "id": "b"})
    (await content_service.create(body)).raise_for_status()
    profiles = [_unique("prf") for _ in range(4)]

    # Exploring: no evidence yet, so each variant gets about half the sends.
    exploring = await _send(content_service, template, profiles, 60)
    logged = await content_service.decisions([m.request_id for m in exploring])
    for message in exploring:
        decision = logged[message.request_id]
        assert decision["variant_id"] == message.variant_id
        assert decision["context_key"].startswith(_CONTEXT)
        assert decision["context_key"].removeprefix(_CONTEXT) in HOUR_BANDS
        assert 0.2 < decision["propensity"] < 0.8

    # Dispatch reports every send; half of a's messages are clicked, none of b's.
    sent_a = [m for m in exploring if m.variant_id == "a"]
    outcomes = []
    for index, message in enumerate(exploring):
        message_id = _unique("msg")
        sent = {"request_id": message.request_id, "profile_id": message.profile_id}
        assert message.variant_id is not None
        outcomes.append(outcome(MessageSent, template, message.variant_id, message_id, **sent))
        if message.variant_id == "a" and index % 2 == 0:
            url = "https://shop.example.com/p/1"
            outcomes.append(outcome(MessageClicked, template, "a", message_id, url=url, **sent))
    clicks = len(outcomes) - len(exploring)
    await content_service.publish(*outcomes)

    async def counted() -> bool:
        response = await content_service.http.get(f"/templates/{template}/variants")
        stats = {v["variant_id"]: v for v in response.json()["variants"]}
        return bool(round(stats["a"]["trials"] + stats["b"]["trials"]) == len(exploring))

    await wait_for(counted, within=60, what="the sends counted as the bandit's trials")
    response = await content_service.http.get(f"/templates/{template}/variants")
    stats = {v["variant_id"]: v for v in response.json()["variants"]}
    assert stats["a"]["trials"] == pytest.approx(len(sent_a), rel=1e-3)
    assert stats["a"]["successes"] == pytest.approx(clicks, rel=1e-3)
    assert stats["b"]["successes"] == 0

    evaluated = await content_service.http.post(f"/templates/{template}/evaluate")
    assert evaluated.status_code == 200, evaluated.text
    experiment = evaluated.json()["experiment"]
    assert experiment["promoted"] and experiment["winner"] == "a"
    assert experiment["probability_best"]["a"] >= 0.95
    insights = await content_service.http.get("/insights", params={"template_id": template})
    [insight] = insights.json()["insights"]
    assert insight["kind"] == "variant_promoted"
    assert insight["message"].startswith(
        f"Variant a of template {template} was promoted: 95 % sure no variant beats it by more "
        "than "
    )
    view = (await content_service.http.get(f"/templates/{template}/variants")).json()
    assert view["experiment"]["promoted"] and view["experiment"]["winner"] == "a"
    assert view["experiment"]["value_remaining"] == experiment["value_remaining"]
    assert {v["variant_id"]: v["probability_best"] for v in view["variants"]} == (
        experiment["probability_best"]
    )

    # Promoted: the runner-up gets the floor (5 %: 10 of 200 expected), no more. A Thompson
    # sampler on this evidence would send it almost never (P(b best) is well under 1 %), so
    # the floor shows in the propensities logged, which are exactly 95 % and 5 %.
    floor = BANDIT.exploration_floor
    promoted = await _send(content_service, template, profiles, 200)
    losers = sum(message.variant_id == "b" for message in promoted)
    assert 1 <= losers <= 25
    logged = await content_service.decisions([m.request_id for m in promoted])
    for message in promoted:
        decision = logged[message.request_id]
        assert decision["variant_id"] == message.variant_id
        expected = floor if message.variant_id == "b" else 1 - floor
        assert decision["propensity"] == pytest.approx(expected)

"""A dry run over the real services: a draft journey with a branch replayed over a planted
population whose answer is known (behaviours from segment, policy, consent and subscription
topics from dispatch), and nothing requested, stored or sent."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from libs.devstack.pytest_plugin import ServiceLauncher
from libs.devstack.stack import Stack
from tests.events import behaviour
from tests.integration.dispatch.conftest import ALLOW_LOOPBACK
from tests.integration.dispatch.providers import Providers, running_providers
from tests.integration.journey.harness import JourneyHarness, unique
from tests.integration.support import wait_for

DAYS = 7
ORDER = "order_completed"


@dataclass
class Services:
    journey: JourneyHarness
    dispatch: httpx.AsyncClient
    providers: Providers
    receiver: str


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def services(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Services]:
    launcher = ServiceLauncher(stack, tmp_path_factory.mktemp("dry-run-logs"))
    run = uuid.uuid4().hex[:8]
    async with running_providers() as (providers, base_url, _):
        try:
            segment = await launcher(
                "services.segment", name=f"segment_d{run}", migrate=True, ready_timeout=60
            )
            dispatch = await launcher(
                "services.dispatch",
                name=f"dispatch_d{run}",
                migrate=True,
                env=ALLOW_LOOPBACK,
                ready_timeout=60,
            )
            journey = await launcher(
                "services.journey",
                name=f"journey_d{run}",
                migrate=True,
                env={
                    "CLOSELOOP_JOURNEY_SEGMENT_URL": segment.url,
                    "CLOSELOOP_JOURNEY_CONTENT_URL": "",
                    "CLOSELOOP_JOURNEY_DISPATCH_URL": dispatch.url,
                    "CLOSELOOP_KAFKA_SESSION_TIMEOUT_MS": "6000",
                },
                ready_timeout=60,
            )
            headers = {"Authorization": f"Bearer {stack.admin_token}"}
            async with httpx.AsyncClient(base_url=dispatch.url, headers=headers) as http:
                harness = JourneyHarness(stack, journey, segment.url)
                receiver = f"dry_{run}"
                for channel in ("email", "sms"):
                    created = await http.post(
                        "/channels",
                        json={
                            "name": channel,
                            "kind": "webhook",
                            "config": {"url": f"{base_url}/hook/{receiver}", "secret": "s"},
                        },
                    )
                    assert created.status_code == 201, created.text
                yield Services(harness, http, providers, receiver)
                await harness.aclose()
        finally:
            await launcher.stop_all()


def welcome_then_thanks_or_vip_sms(segment: str) -> dict[str, Any]:
    return {
        "entry": {"segment": segment},
        "start": "welcome",
        "nodes": {
            "welcome": {"type": "send", "channel": "email", "template_id": "tpl_w", "next": "wait"},
            "wait": {
                "type": "wait_for",
                "event": ORDER,
                "timeout": "P2D",
                "next": "thanks",
                "timeout_next": "is_vip",
            },
            "is_vip": {
                "type": "branch",
                "branches": [{"condition": {"tag": "vip"}, "next": "vip_sms"}],
                "default": "done",
            },
            "vip_sms": {"type": "send", "channel": "sms", "template_id": "tpl_v", "next": "done"},
            "thanks": {"type": "send", "channel": "email", "template_id": "tpl_t"},
            "done": {"type": "exit"},
        },
    }


def quiet_around(moment: datetime) -> dict[str, Any]:
    """SMS quiet hours from an hour before to an hour after `moment`'s UTC clock: the replay's
    SMS, two days after entries made seven days before now, fall in them on a UTC clock, not
    on Shanghai's (eight hours ahead)."""
    return {
        "start": (moment - timedelta(hours=1)).strftime("%H:%M"),
        "end": (moment + timedelta(hours=1)).strftime("%H:%M"),
        "channels": ["sms"],
    }


async def plant(services: Services, segment: str, tag: str) -> dict[str, str]:
    """Six members (and one outsider who orders), their orders in the replayed days (and one
    before them); returns the people by role."""
    now = datetime.now(UTC)
    since = now - timedelta(days=DAYS)
    people = {
        role: unique(f"prf_{role}")
        for role in ("cap", "late", "vip_utc", "vip_sh", "no_email", "plain", "outsider")
    }
    zones = {"vip_sh": "Asia/Shanghai"}
    events = []
    for role, profile_id in people.items():
        tags = [tag] if role != "outsider" else []
        if role.startswith("vip"):
            tags.append("vip")
        traits = {"timezone": zones.get(role, "UTC"), "email": f"{profile_id}@example.org"}
        events.append(behaviour(profile_id, "signed_up", traits=traits, changes={"tags": tags}))
    orders = {
        "cap": since + timedelta(hours=1),  # thanks within a day of the welcome: capped
        "late": since + timedelta(hours=25),
        "outsider": since + timedelta(hours=1),  # not a member: never enters
        "plain": since - timedelta(days=1),  # before the replayed days: does not count
    }
    events += [behaviour(people[role], ORDER, at=at) for role, at in orders.items()]
    await services.journey.publish(*events)
    policy = await services.dispatch.put(
        "/policies",
        json={
            "caps": [{"channel": "email", "max": 1, "window": "P1D"}],
            "quiet_hours": quiet_around(now),
        },
    )
    assert policy.status_code == 200, policy.text
    consent = await services.dispatch.put(
        f"/preferences/{people['no_email']}", json={"consent": {"email": False}}
    )
    assert consent.status_code == 200, consent.text
    members = {p for role, p in people.items() if role != "outsider"}

    async def heard() -> bool:
        return await services.journey.members(segment) == members

    await wait_for(heard, within=90, what="journey to hear the six members of the segment")
    ordered = {people[role] for role in orders}

    async def kept() -> bool:
        answer = await services.journey.http.get(
            f"{services.journey.segment_url}/behaviours",
            params={"event": ORDER, "since": (since - timedelta(days=2)).isoformat()},
        )
        found = {row["profile_id"] for row in answer.json()["behaviours"]}
        return ordered <= found

    await wait_for(kept, within=30, what="segment to keep the four orders")
    return people


async def test_dry_run_of_a_draft_reports_what_it_would_do_and_sends_nothing(
    services: Services,
) -> None:
    harness = services.journey
    segment, tag, journey_id = unique("seg_dry"), unique("dry"), unique("jrn_dry")
    created = await harness.http.post(
        f"{harness.segment_url}/segments",
        json={"id": segment, "name": segment, "conditions": {"tag": tag}},
    )
    assert created.status_code == 201, created.text
    draft = await harness.create(journey_id, welcome_then_thanks_or_vip_sms(segment))
    assert draft.status_code == 201, draft.text
    await plant(services, segment, tag)

    async def vips_known() -> bool:
        """Journey's copy of the profiles holds the VIPs' tag. It comes with the behaviours,
        on another topic than the memberships `plant` waited for, and may come after them."""
        probe = await harness.http.post(f"/journeys/{journey_id}/dry-run", json={"days": DAYS})
        return probe.status_code == 200 and "vip_sms" in probe.json()["sends"]

    await wait_for(vips_known, within=60, what="journey's copy of the VIPs' tag")
    answer = await harness.http.post(f"/journeys/{journey_id}/dry-run", json={"days": DAYS})

    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert (report["people"], report["entries"], report["version"]) == (6, 6, 1)
    assert report["sends"] == {
        "welcome": {"email": {"sent": 5, "suppressed": 1}},
        "thanks": {"email": {"sent": 1, "suppressed": 1}},
        "vip_sms": {"sms": {"sent": 2, "suppressed": 0}},
    }
    assert report["policy"] == {"consent": 1, "frequency_cap": 1, "quiet_hours": 1}
    assert report["paths"] == [
        {"nodes": ["welcome", "wait", "is_vip", "done"], "runs": 2},
        {"nodes": ["welcome", "wait", "is_vip", "vip_sms", "done"], "runs": 2},
        {"nodes": ["welcome", "wait", "thanks"], "runs": 2},
    ]
    assert report["total"] == {"entered": 6, "completed": 2, "exited": 4, "in_progress": 0}
    assert report["nodes"]["wait"]["matched"] == 2
    assert report["nodes"]["wait"]["timed_out"] == 4
    await nothing_happened(services, journey_id)


async def nothing_happened(services: Services, journey_id: str) -> None:
    """No request on the bus, no run or stat stored, nothing at the receiver."""
    assert await services.journey.requested(journey_id) == []
    engine = create_async_engine(services.journey.stack.database_url)
    try:
        async with engine.connect() as connection:
            stored = await connection.scalar(
                text(
                    f"SELECT (SELECT count(*) FROM {services.journey.schema}.runs "
                    "WHERE journey_id = :j) + (SELECT count(*) FROM "
                    f"{services.journey.schema}.stats WHERE journey_id = :j)"
                ),
                {"j": journey_id},
            )
    finally:
        await engine.dispose()
    assert stored == 0
    assert services.providers.webhook(services.receiver).by_key == {}


async def test_dry_run_of_a_broadcast_judges_each_member_once(services: Services) -> None:
    harness = services.journey
    segment, tag = unique("seg_dry"), unique("dry")
    created = await harness.http.post(
        f"{harness.segment_url}/segments",
        json={"id": segment, "name": segment, "conditions": {"tag": tag}},
    )
    assert created.status_code == 201, created.text
    await plant(services, segment, tag)

    answer = await harness.http.post(
        "/broadcasts/dry-run",
        json={"segment": segment, "channel": "email", "template_id": "tpl_b"},
    )

    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert (report["people"], report["entries"]) == (6, 6)
    assert report["sends"] == {"send": {"email": {"sent": 5, "suppressed": 1}}}
    assert report["policy"] == {"consent": 1}
    await nothing_happened(services, "brd_dry_run")


async def test_dry_run_counts_a_member_who_declined_the_topic_on_the_channel_as_unsubscribed(
    services: Services,
) -> None:
    harness = services.journey
    segment, tag, topic = unique("seg_dry"), unique("dry"), unique("news")
    created = await harness.http.post(
        f"{harness.segment_url}/segments",
        json={"id": segment, "name": segment, "conditions": {"tag": tag}},
    )
    assert created.status_code == 201, created.text
    defined = await services.dispatch.post(
        "/topics", json={"topic_id": topic, "name": "News", "channels": ["email", "sms"]}
    )
    assert defined.status_code == 201, defined.text
    people = await plant(services, segment, tag)
    for role, channel in (("plain", "email"), ("late", "sms")):
        answered = await services.dispatch.put(
            f"/preferences/{people[role]}", json={"topics": {topic: {channel: False}}}
        )
        assert answered.status_code == 200, answered.text

    answer = await harness.http.post(
        "/broadcasts/dry-run",
        json={"segment": segment, "channel": "email", "template_id": "tpl_b", "topic": topic},
    )

    assert answer.status_code == 200, answer.text
    report = answer.json()
    # No email from the topic for `plain`; `late` said no to it by SMS only.
    assert report["sends"] == {"send": {"email": {"sent": 4, "suppressed": 2}}}
    assert report["policy"] == {"consent": 1, "unsubscribed": 1}
    await nothing_happened(services, "brd_dry_run")


async def test_bad_input_is_a_422_naming_the_field_and_a_missing_journey_a_404(
    services: Services,
) -> None:
    http = services.journey.http
    missing = await http.post(f"/journeys/{unique('jrn_none')}/dry-run", json={"days": 7})
    no_days = await http.post(f"/journeys/{unique('jrn_none')}/dry-run", json={"days": 0})
    no_segment = await http.post(
        "/broadcasts/dry-run",
        json={"segment": unique("seg_none"), "channel": "email", "template_id": "tpl_b"},
    )

    assert missing.status_code == 404, missing.text
    assert (no_days.status_code, no_days.json()["error"]["field"]) == (422, "body.days")
    assert (no_segment.status_code, no_segment.json()["error"]["field"]) == (422, "body.segment")

"""The console in front of the services its profile and report pages read (segment, profile,
dispatch, journey, attribution), and one person who went round the loop: identified with a
trait named `<script>`, entered a journey and a segment, was sent a message (which dispatch
could not deliver: its channel is not configured), got another that was opened and clicked,
and bought, credited to that message."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from libs.common.events import Event, IngestIdentify, IngestTrack, JourneyRef
from libs.devstack import free_port
from libs.devstack.pytest_plugin import ServiceLauncher
from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack
from tests.events import clicked, delivered, opened, rendered, sent
from tests.integration.console.harness import ConsoleBrowser, Person, console_command
from tests.integration.support import publish, wait_for

# The services the profile and report pages read.
_READ = ("segment", "profile", "dispatch", "journey", "attribution")
SCRIPT_TRAIT = "<script>alert(1)</script>"
SCRIPT_VALUE = "<img src=x onerror=alert(2)>"


@dataclass
class Shopper:
    """The person the services know, and the names of what they went through."""

    profile_id: str
    user_id: str
    email: str
    plan: str
    journey_id: str
    segment_id: str
    channel: str
    clicked_message: str
    entry_event: str
    conversion_id: str


@dataclass
class LoopConsole:
    url: str
    services: dict[str, ServiceProcess]
    admin: httpx.AsyncClient
    analyst: Person
    shopper: Shopper

    def browser(self) -> ConsoleBrowser:
        return ConsoleBrowser(self.url)


@contextlib.asynccontextmanager
async def running_loop_console(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LoopConsole]:
    """The services and the console, started once, with the shopper's story told to them."""
    launcher = ServiceLauncher(stack, tmp_path_factory.mktemp("console-loop-logs"))
    run = uuid.uuid4().hex[:8]
    consumer = {"CLOSELOOP_KAFKA_SESSION_TIMEOUT_MS": "6000"}
    admin = httpx.AsyncClient(
        headers={"Authorization": f"Bearer {stack.admin_token}"}, timeout=30.0
    )
    # Every port chosen first, so that the services can start side by side.
    ports = {name: free_port() for name in (*_READ, "console")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    env = {name: consumer for name in _READ} | {
        "journey": {
            **consumer,
            "CLOSELOOP_JOURNEY_SEGMENT_URL": urls["segment"],
            "CLOSELOOP_JOURNEY_CONTENT_URL": "",
        },
        "console": {f"CLOSELOOP_CONSOLE_{name.upper()}_URL": urls[name] for name in _READ},
    }
    try:
        started = await asyncio.gather(
            *(
                launcher(
                    f"services.{name}",
                    name=f"{name}_{run}" if name == "console" else f"{name}_c{run}",
                    port=ports[name],
                    migrate=True,
                    env=env[name],
                    ready_timeout=90,
                )
                for name in ports
            )
        )
        services = dict(zip(ports, started, strict=True))
        console = services.pop("console")
        analyst = Person(f"analyst-{run}@example.com", "analyst password 1", "analyst")
        command_env = {**stack.env(), "CLOSELOOP_SERVICE_NAME": f"console_{run}"}
        added, shopper = await asyncio.gather(
            console_command(
                command_env,
                "create-user",
                "--email",
                analyst.email,
                "--role",
                "analyst",
                password=analyst.password,
            ),
            _tell_the_story(stack, admin, services, run),
        )
        assert added[0] == 0, added[1]
        yield LoopConsole(console.url, services, admin, analyst, shopper)
    finally:
        await admin.aclose()
        await launcher.stop_all()


async def _tell_the_story(
    stack: Stack, admin: httpx.AsyncClient, services: dict[str, ServiceProcess], run: str
) -> Shopper:
    segment, journey, attribution, profile = (
        services["segment"].url,
        services["journey"].url,
        services["attribution"].url,
        services["profile"].url,
    )
    plan, entry = f"oolong_{run}", f"tea_viewed_{run}"
    journey_id, segment_id = f"jrn_tea_{run}", f"seg_oolong_{run}"
    created = await admin.post(
        f"{segment}/segments",
        json={
            "id": segment_id,
            "name": "Oolong fans",
            "conditions": {"trait": "plan", "op": "eq", "value": plan},
        },
    )
    assert created.status_code == 201, created.text
    graph = {
        "id": journey_id,
        "name": "Tea welcome",
        "entry": {"event": entry},
        "start": "hello",
        "nodes": {"hello": {"type": "send", "channel": "email", "template_id": "tpl_tea"}},
    }
    assert (await admin.post(f"{journey}/journeys", json=graph)).status_code == 201
    assert (await admin.post(f"{journey}/journeys/{journey_id}/publish")).status_code == 200
    defined = await admin.post(
        f"{attribution}/conversions",
        json={
            "id": f"cnv_order_{run}",
            "name": "Order",
            "event": f"order_completed_{run}",
            "value_property": "revenue",
            "currency_property": "currency",
            "attribution_model": "last_touch",
            "window": "P7D",
        },
    )
    assert defined.status_code == 201, defined.text

    user_id, email = f"u_{run}", f"mei.lin.{run}@example.org"
    now = datetime.now(UTC)
    traits = {"email": email, "first_name": "Mei", "plan": plan, SCRIPT_TRAIT: SCRIPT_VALUE}
    await _ingest(stack, _identify(user_id, traits, now - timedelta(hours=3)))
    await _ingest(stack, _track(user_id, entry, {"tea": "oolong"}, now - timedelta(hours=3)))
    profile_id = await _profile_id(admin, profile, user_id)

    channel = f"mail_{run}"
    message = f"msg_{run}"
    lineage: dict[str, Any] = {
        "message_id": message,
        "channel": channel,
        "journey": JourneyRef(journey_id=journey_id, journey_version=1, node_id="hello"),
        "template_id": "tpl_tea",
        "variant_id": "var_a",
    }
    await publish(
        stack.kafka_bootstrap,
        [
            rendered(channel, profile_id),
            sent(profile_id, at=now - timedelta(hours=2), **lineage),
            delivered(profile_id, at=now - timedelta(hours=2), **lineage),
            opened(profile_id, at=now - timedelta(minutes=90), **lineage),
            clicked(profile_id, at=now - timedelta(hours=1), **lineage),
        ],
    )

    async def touched() -> bool:
        answer = await admin.get(f"{attribution}/profiles/{profile_id}/touches")
        return len(answer.json()["touches"]) >= 4

    await wait_for(touched, within=90, what="attribution to record the shopper's touches")
    bought = {"revenue": 42, "currency": "EUR"}
    await _ingest(stack, _track(user_id, f"order_completed_{run}", bought, now))
    await _until_every_service_knows(admin, services, profile_id, journey_id)
    return Shopper(
        profile_id,
        user_id,
        email,
        plan,
        journey_id,
        segment_id,
        channel,
        message,
        entry,
        f"cnv_order_{run}",
    )


async def _until_every_service_knows(
    admin: httpx.AsyncClient, services: dict[str, ServiceProcess], profile_id: str, journey: str
) -> None:
    checks = {
        "the conversion": (
            f"{services['attribution'].url}/profiles/{profile_id}/touches",
            lambda answer: len(answer["conversions"]) == 1,
        ),
        "the journey run": (
            f"{services['journey'].url}/profiles/{profile_id}/runs",
            lambda answer: [r["journey_id"] for r in answer["runs"]] == [journey],
        ),
        "the failed message": (
            f"{services['dispatch'].url}/profiles/{profile_id}/messages",
            lambda answer: [m["status"] for m in answer["messages"]] == ["failed"],
        ),
        "the segment and the order": (
            f"{services['profile'].url}/profiles/{profile_id}",
            lambda answer: bool(answer["segments"]) and answer["engagement"]["by_channel"],
        ),
    }
    for what, (url, holds) in checks.items():

        async def known(url: str = url, holds: Any = holds) -> bool:
            response = await admin.get(url)
            return response.status_code == 200 and bool(holds(response.json()))

        await wait_for(known, within=90, what=what)


async def _profile_id(admin: httpx.AsyncClient, profile_url: str, user_id: str) -> str:
    found: list[str] = []

    async def resolved() -> bool:
        answer = await admin.get(
            f"{profile_url}/profiles", params={"identifier": f"user_id:{user_id}"}
        )
        found[:] = [p["id"] for p in answer.json()["profiles"]]
        return bool(found)

    await wait_for(resolved, within=90, what="the profile service to resolve the shopper")
    return found[0]


def _identify(user_id: str, traits: dict[str, Any], at: datetime) -> IngestIdentify:
    return IngestIdentify(
        messageId=f"identify-{uuid.uuid4().hex}",
        userId=user_id,
        traits=traits,
        **_timing(at),
    )


def _track(user_id: str, event: str, properties: dict[str, Any], at: datetime) -> IngestTrack:
    return IngestTrack(
        messageId=f"track-{uuid.uuid4().hex}",
        userId=user_id,
        event=event,
        properties=properties,
        **_timing(at),
    )


def _timing(at: datetime) -> dict[str, Any]:
    return {"timestamp": at, "receivedAt": at, "sourceId": "src_console_tests"}


async def _ingest(stack: Stack, call: IngestIdentify | IngestTrack) -> None:
    assert call.user_id is not None
    event = Event(data=call, key=call.user_id, source="tests", id=call.message_id)
    await publish(stack.kafka_bootstrap, [event])

"""Ingest, profile and journey running as processes, and a console in front of the journey
service, with an admin made on the command line and a marketer and an analyst the admin added:
what the journey canvas's tests drive."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from libs.devstack.pytest_plugin import ServiceLauncher
from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack
from tests.integration.console.harness import ConsoleBrowser, Person, staff

_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
_CONSUMER = {"CLOSELOOP_KAFKA_SESSION_TIMEOUT_MS": "6000"}


@dataclass
class JourneyConsole:
    stack: Stack
    console: ServiceProcess
    schema: str
    journey: httpx.AsyncClient
    ingest: httpx.AsyncClient
    write_key: str
    marketer: Person
    analyst: Person

    async def browser(self, person: Person) -> ConsoleBrowser:
        """A console browser signed in as `person`, holding its session's CSRF token."""
        browser = ConsoleBrowser(self.console.url)
        await signed_in(browser, person)
        return browser

    async def track(self, user_id: str, event: str, **properties: Any) -> None:
        """A Segment track call to ingest with the source's write key, sent by curl."""
        body = json.dumps({"userId": user_id, "event": event, "properties": properties})
        curl = await asyncio.create_subprocess_exec(
            "curl", "-sS", "--fail-with-body", "--max-time", "30",
            "-u", f"{self.write_key}:", "-H", "Content-Type: application/json",
            "-d", body, str(self.ingest.base_url.join("/v1/track")),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        answer, error = await curl.communicate()
        assert curl.returncode == 0, (answer, error)
        assert json.loads(answer) == {"success": True}, answer


async def signed_in(browser: ConsoleBrowser, person: Person) -> None:
    """Sign in through the form, then learn the session's CSRF token from the journeys page."""
    form = await browser.get("/sign-in")
    token = _CSRF_FIELD.search(form.text)
    assert token is not None, form.text
    fields = {"email": person.email, "password": person.password, "next": "/journeys"}
    response = await browser.post_form("/sign-in", fields, csrf=token.group(1))
    assert response.status_code == 303, response.text
    page = await browser.get("/journeys")
    meta = _CSRF_META.search(page.text)
    assert meta is not None, page.text
    browser.csrf = meta.group(1)


@contextlib.asynccontextmanager
async def running_journey_console(stack: Stack, logs: Path) -> AsyncIterator[JourneyConsole]:
    """The four services started side by side (the journey service skips the template and
    segment checks: no content or segment service runs), a source, and the three people."""
    launcher = ServiceLauncher(stack, logs)
    run = uuid.uuid4().hex[:8]
    admin_header = {"Authorization": f"Bearer {stack.admin_token}"}
    try:
        async with asyncio.TaskGroup() as starting:
            ingest = starting.create_task(
                launcher("services.ingest", name=f"ingest_c{run}", migrate=True, ready_timeout=60)
            )
            starting.create_task(
                launcher(
                    "services.profile",
                    name=f"profile_c{run}",
                    migrate=True,
                    env=_CONSUMER,
                    ready_timeout=60,
                )
            )
            journey = starting.create_task(
                launcher(
                    "services.journey",
                    name=f"journey_c{run}",
                    migrate=True,
                    env={
                        **_CONSUMER,
                        "CLOSELOOP_JOURNEY_SEGMENT_URL": "",
                        "CLOSELOOP_JOURNEY_CONTENT_URL": "",
                    },
                    ready_timeout=60,
                )
            )
        journey_url = journey.result().url
        console = await launcher(
            "services.console",
            name=f"console_{run}",
            migrate=True,
            env={"CLOSELOOP_CONSOLE_JOURNEY_URL": journey_url},
            ready_timeout=60,
        )
        async with (
            httpx.AsyncClient(base_url=ingest.result().url, timeout=30) as ingest_client,
            httpx.AsyncClient(
                base_url=journey_url, headers=admin_header, timeout=30
            ) as journey_client,
        ):
            source = await ingest_client.post(
                "/sources", json={"name": "console"}, headers=admin_header
            )
            assert source.status_code == 201, source.text
            schema = f"console_{run}"
            command_env = {**stack.env(), "CLOSELOOP_SERVICE_NAME": schema}
            _, marketer, analyst = await staff(command_env, console.url, run)
            yield JourneyConsole(
                stack,
                console,
                schema,
                journey_client,
                ingest_client,
                source.json()["write_key"],
                marketer,
                analyst,
            )
    finally:
        await launcher.stop_all()

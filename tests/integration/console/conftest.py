"""A segment service and a console in front of it, with an admin made on the command line and a
marketer and an analyst the admin added; and those two signed in to it (or to the `console` a
test module brings of its own)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack
from tests.integration.console.harness import ConsoleBrowser, Person, StaffedConsole, staff
from tests.integration.segment.harness import SegmentHarness
from tests.integration.support import started_service


@dataclass
class Console:
    process: ServiceProcess
    schema: str
    segment: SegmentHarness
    admin: Person
    marketer: Person
    analyst: Person
    command_env: dict[str, str]

    def browser(self) -> ConsoleBrowser:
        return ConsoleBrowser(self.process.url)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def console(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Console]:
    logs = tmp_path_factory.mktemp("console-logs")
    async with started_service(stack, logs, "segment", env={}) as (segment_process, _):
        segment = SegmentHarness(stack, segment_process)
        env = {"CLOSELOOP_CONSOLE_SEGMENT_URL": segment_process.url}
        async with started_service(stack, logs, "console", env=env) as (process, run):
            command_env = {**stack.env(), "CLOSELOOP_SERVICE_NAME": f"console_{run}"}
            admin, marketer, analyst = await staff(command_env, process.url, run)
            yield Console(
                process,
                f"console_{run}",
                segment,
                admin,
                marketer,
                analyst,
                command_env,
            )
        await segment.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def marketer(console: StaffedConsole) -> AsyncIterator[ConsoleBrowser]:
    browser = console.browser()
    assert (await browser.sign_in(console.marketer)).status_code == 303
    yield browser
    await browser.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def analyst(console: StaffedConsole) -> AsyncIterator[ConsoleBrowser]:
    browser = console.browser()
    assert (await browser.sign_in(console.analyst)).status_code == 303
    yield browser
    await browser.aclose()

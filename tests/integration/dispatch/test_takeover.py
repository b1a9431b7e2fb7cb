"""Rows a dead sender left `sending`: a running dispatch takes them over and resolves each by
whether its call had started, and for an uncertain one by its channel kind's policy."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
import pytest_asyncio

from libs.devstack.pytest_plugin import ServiceLauncher
from libs.devstack.stack import Stack
from tests.events import JOURNEY, unique
from tests.integration.dispatch.conftest import ALLOW_LOOPBACK, FAST, warm_up
from tests.integration.dispatch.harness import DispatchHarness
from tests.integration.dispatch.providers import Providers, running_providers
from tests.integration.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
DEAD_SENDER = "dead-host:1:deadbeef"


@dataclass
class Running:
    harness: DispatchHarness
    providers: Providers
    base_url: str
    smtp_port: int


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def running(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    launcher = ServiceLauncher(stack, tmp_path_factory.mktemp("dispatch-takeover-logs"))
    run = uuid.uuid4().hex[:8]
    env = {**ALLOW_LOOPBACK, **FAST, "CLOSELOOP_DISPATCH_UNCERTAIN_SENDS": '{"email": "give_up"}'}
    async with running_providers() as (providers, base_url, smtp_port):
        try:
            process = await launcher(
                "services.dispatch", name=f"dispatch_takeover_{run}", migrate=True, env=env
            )
            harness = DispatchHarness(stack, process)
            await warm_up(harness, providers, base_url, run)
            yield Running(harness, providers, base_url, smtp_port)
            await harness.aclose()
        finally:
            await launcher.stop_all()


async def _left_by_a_dead_sender(harness: DispatchHarness, channel: str, attempted: bool) -> str:
    """A ledger row `sending`, owned by a sender that never wrote a heartbeat; its request id."""
    request_id = unique("req")
    dsn = harness.stack.database_url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            f"INSERT INTO {harness.process.name}.sends (message_id, idempotency_key, event_id, "
            "request_id, profile_id, channel, template_id, template_version, journey, subject, "
            "body, recipient, status, attempts, due_at, decided_at, owner, attempt_started_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, 'tpl_test', 1, $7::jsonb, 'Hi', 'Hello', $8, "
            "'sending', $9, now(), now(), $10, CASE WHEN $11 THEN now() END)",
            unique("msg"),
            unique("key"),
            unique("evt"),
            request_id,
            unique("prf"),
            channel,
            JOURNEY.model_dump_json(),
            f"{request_id}@example.com",
            1 if attempted else 0,
            DEAD_SENDER,
            attempted,
        )
    finally:
        await connection.close()
    return request_id


async def _outcome(harness: DispatchHarness, request_id: str) -> object:
    async def arrived() -> bool:
        return bool(await harness.outcomes(request_id))

    await wait_for(arrived, within=60, what=f"an outcome of {request_id}", every=0.3)
    return (await harness.outcomes(request_id))[0]


async def _email(running: Running) -> str:
    name = unique("mail")
    config = {
        "host": "127.0.0.1",
        "port": running.smtp_port,
        "tls": "none",
        "from_address": "news@shop.example.com",
    }
    await running.harness.channel(name, "email", config)
    return name


async def test_an_uncertain_email_is_given_up_with_the_reason_by_policy(running: Running) -> None:
    channel = await _email(running)
    request_id = await _left_by_a_dead_sender(running.harness, channel, attempted=True)
    failed = await _outcome(running.harness, request_id)
    assert getattr(failed, "event_type", None) == "message.failed"
    assert getattr(failed, "retryable", None) is False
    assert str(getattr(failed, "error", "")).startswith("uncertain:")
    assert not [m for m in running.providers.mail if m["To"] == f"{request_id}@example.com"]


async def test_an_email_never_attempted_is_sent_on_takeover(running: Running) -> None:
    channel = await _email(running)
    request_id = await _left_by_a_dead_sender(running.harness, channel, attempted=False)
    sent = await _outcome(running.harness, request_id)
    assert getattr(sent, "event_type", None) == "message.sent"
    assert [m for m in running.providers.mail if m["To"] == f"{request_id}@example.com"]


async def test_an_uncertain_webhook_is_resent_with_its_key(running: Running) -> None:
    channel = unique("hook")
    url = f"{running.base_url}/hook/{channel}"
    await running.harness.channel(channel, "webhook", {"url": url, "secret": "s"})
    request_id = await _left_by_a_dead_sender(running.harness, channel, attempted=True)
    sent = await _outcome(running.harness, request_id)
    assert getattr(sent, "event_type", None) == "message.sent"
    assert len(running.providers.webhook(channel).raw) == 1

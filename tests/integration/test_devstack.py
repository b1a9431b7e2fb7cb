"""The embedded stack itself: broker, database, service processes and the environment they share."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from libs.common import topics
from libs.common.settings import Settings
from libs.devstack import ServiceSpec, discover_services, free_port
from libs.devstack.pytest_plugin import ServiceLauncher, SettingsFactory
from libs.devstack.stack import Stack
from tests.integration.support import wait_for

pytestmark = pytest.mark.integration

_PROBE = "tests.integration.devstack_probe_app"


async def test_broker_delivers_a_produced_message_to_a_consumer(stack: Stack) -> None:
    topic = f"devstack-{uuid.uuid4().hex}"
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, b"hello", key=b"profile-1", headers=[("ce_type", b"test.sent")]
        )
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=f"devstack-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        record = await consumer.getone()
    finally:
        await consumer.stop()

    assert (record.key, record.value) == (b"profile-1", b"hello")
    assert list(record.headers) == [("ce_type", b"test.sent")]


async def test_stack_creates_every_topic_of_the_loop(stack: Stack) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap)
    await consumer.start()
    try:
        existing = await consumer.topics()
    finally:
        await consumer.stop()

    assert set(topics.ALL) <= existing


async def test_database_answers_through_the_stack_url(stack: Stack) -> None:
    engine = create_async_engine(stack.database_url)
    try:
        async with engine.connect() as connection:
            answer = await connection.scalar(text("select 1"))
            database = await connection.scalar(text("select current_database()"))
    finally:
        await engine.dispose()

    assert (answer, database) == (1, "closeloop")


async def test_killed_service_exits_with_sigkill_and_restarts_ready(
    service_process: ServiceLauncher,
) -> None:
    probe = await service_process(_PROBE, name="probe")
    async with httpx.AsyncClient(base_url=probe.url) as client:
        assert (await client.get("/readyz")).status_code == 200

    assert await probe.kill() == -9
    assert probe.returncode == -9

    await probe.restart()
    assert probe.returncode is None
    async with httpx.AsyncClient(base_url=probe.url) as client:
        assert (await client.get("/readyz")).status_code == 200


async def test_service_that_dies_at_start_fails_wait_ready_with_its_log(
    service_process: ServiceLauncher,
) -> None:
    with pytest.raises(RuntimeError, match="No module named"):
        await service_process("tests.integration.no_such_module", ready_timeout=10)


async def test_stack_migrates_then_serves_the_services_it_is_given(stack: Stack) -> None:
    processes = await stack.start_services([ServiceSpec("probe", _PROBE, free_port())])
    try:
        (probe,) = processes
        assert "probe: nothing to migrate" in probe.log_path.read_text()
        async with httpx.AsyncClient(base_url=probe.url) as client:
            assert (await client.get("/healthz")).status_code == 200
    finally:
        for process in processes:
            await process.stop()


def test_discovery_lists_services_in_loop_order_with_their_ports(tmp_path: Path) -> None:
    for name in ("dispatch", "zeta", "ingest", "_template", "alpha"):
        (tmp_path / "services" / name).mkdir(parents=True)
        (tmp_path / "services" / name / "__main__.py").touch()
    (tmp_path / "services" / "no_main").mkdir()

    specs = discover_services(tmp_path)

    assert specs == [
        ServiceSpec("ingest", "services.ingest", 8101),
        ServiceSpec("dispatch", "services.dispatch", 8106),
        ServiceSpec("alpha", "services.alpha", 8109),
        ServiceSpec("zeta", "services.zeta", 8110),
    ]


def test_discovery_without_services_finds_none(tmp_path: Path) -> None:
    assert discover_services(tmp_path) == []


def test_stack_env_points_children_at_the_stack(stack: Stack) -> None:
    env = stack.env()

    assert env["CLOSELOOP_KAFKA_BOOTSTRAP"] == stack.kafka_bootstrap
    assert env["CLOSELOOP_DATABASE_URL"] == stack.database_url
    assert env["CLOSELOOP_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert env["CLOSELOOP_ENVIRONMENT"] == "test"
    assert env["CLOSELOOP_ADMIN_TOKEN"] == stack.admin_token
    if stack.broker is not None:
        assert env["CLOSELOOP_KAFKA_IDEMPOTENCE"] == "false"


def test_settings_factory_reads_the_stack(settings_factory: SettingsFactory, stack: Stack) -> None:
    settings = settings_factory("profile", batch_max_records=7)

    assert isinstance(settings, Settings)
    assert settings.service_name == "profile"
    assert settings.kafka_bootstrap == stack.kafka_bootstrap
    assert settings.database_url == stack.database_url
    assert settings.admin_token.get_secret_value() == stack.admin_token
    assert settings.batch_max_records == 7
    if stack.broker is not None:
        assert settings.kafka_idempotence is False


async def test_a_stack_whose_starter_is_killed_outright_does_not_outlive_it(
    tmp_path: Path,
) -> None:
    """A test run or a benchmark killed with SIGKILL (or by a timeout) cannot stop its broker
    and database: they must stop by themselves rather than keep running, orphaned."""
    starter = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.devstack_orphan_probe",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
    )
    assert starter.stdout is not None
    children: list[int] = []
    try:
        async with asyncio.timeout(90):
            children = json.loads(await starter.stdout.readline())
        assert len(children) == 2
        assert all(_running(pid) for pid in children)
        starter.kill()
        await starter.wait()
        await wait_for(lambda: _all_gone(children), within=30, what="broker and database to stop")
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if starter.returncode is None:
            starter.kill()
            await starter.wait()


async def _all_gone(pids: list[int]) -> bool:
    return not any(_running(pid) for pid in pids)


def _running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False

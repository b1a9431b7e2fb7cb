"""Pytest fixtures over the real broker and database: the stack, settings and service processes."""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, TypeVar, overload

import pytest
import pytest_asyncio

from libs.common.settings import Settings
from libs.devstack._process import free_port
from libs.devstack.services import ServiceProcess, stop_leftovers
from libs.devstack.stack import Stack

SettingsT = TypeVar("SettingsT", bound=Settings)

TEST_ADMIN_TOKEN = "test-admin-token"


class SettingsFactory:
    """Makes settings pointed at the test stack: `make_settings(service_name=..., **overrides)`."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack

    @overload
    def __call__(
        self, service_name: str = ..., *, settings_class: None = None, **overrides: Any
    ) -> Settings: ...

    @overload
    def __call__(
        self, service_name: str = ..., *, settings_class: type[SettingsT], **overrides: Any
    ) -> SettingsT: ...

    def __call__(
        self,
        service_name: str = "test",
        *,
        settings_class: type[Settings] | None = None,
        **overrides: Any,
    ) -> Settings:
        values: dict[str, Any] = {
            "service_name": service_name,
            "environment": self._stack.environment,
            "kafka_bootstrap": self._stack.kafka_bootstrap,
            "database_url": self._stack.database_url,
            "admin_token": self._stack.admin_token,
            "tracking_secret": self._stack.tracking_secret,
            "topic_partitions": self._stack.partitions,
            "topic_replication_factor": self._stack.replication_factor,
        }
        idempotence = self._stack.env().get("CLOSELOOP_KAFKA_IDEMPOTENCE")
        if idempotence is not None:
            values["kafka_idempotence"] = idempotence
        return (settings_class or Settings)(**(values | overrides))


class ServiceLauncher:
    """Starts modules as service processes on the test stack and stops them all at teardown."""

    def __init__(self, stack: Stack, log_dir: Path) -> None:
        self._stack = stack
        self._log_dir = log_dir
        self.started: list[ServiceProcess] = []

    async def __call__(
        self,
        module: str,
        *,
        name: str | None = None,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        migrate: bool = False,
        ready_timeout: float = 30.0,
    ) -> ServiceProcess:
        """Start `python -m <module>` (after `migrate` if asked) and return it once ready."""
        process = ServiceProcess(
            name or module.rsplit(".", 1)[-1],
            module,
            {**self._stack.env(), **(env or {})},
            port if port is not None else free_port(),
            log_dir=self._log_dir,
        )
        if migrate:
            await process.migrate()
        self.started.append(process)
        process.start()
        await process.wait_ready(ready_timeout)
        return process

    async def stop_all(self) -> None:
        for process in reversed(self.started):
            await process.stop()
        self.started.clear()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """The broker and database for the session (embedded unless the environment names them)."""
    # Not under pytest's basetemp: that is private to root, and postgres runs as another user
    # when we are root. Logs do go there, so pytest keeps them for a failed run.
    state_dir = Path(tempfile.mkdtemp(prefix="closeloop-stack-"))
    os.chmod(state_dir, 0o755)
    test_stack = Stack(
        state_dir,
        log_dir=tmp_path_factory.mktemp("devstack-logs"),
        fast=True,
        environment="test",
        admin_token=TEST_ADMIN_TOKEN,
    )
    try:
        await test_stack.start()
        yield test_stack
    finally:
        # Services a test started itself and did not stop (it failed first) would otherwise
        # outlive the session, retrying a broker and database that are gone.
        if leftovers := await stop_leftovers():
            names = ", ".join(leftovers)
            warnings.warn(f"tests left these services running: {names}", stacklevel=1)
        await test_stack.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture
def settings_factory(stack: Stack) -> SettingsFactory:
    """`settings_factory(service_name=..., settings_class=..., **overrides)` -> settings."""
    return SettingsFactory(stack)


@pytest_asyncio.fixture(loop_scope="session")
async def service_process(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServiceLauncher]:
    """`await service_process("services.x", ...)` -> a ready process, stopped at teardown."""
    launcher = ServiceLauncher(stack, tmp_path_factory.mktemp("service-logs"))
    try:
        yield launcher
    finally:
        await launcher.stop_all()


__all__ = [
    "ServiceLauncher",
    "SettingsFactory",
    "service_process",
    "settings_factory",
    "stack",
]

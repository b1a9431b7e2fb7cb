"""The whole platform on one machine: broker, database, topics and the services, in order."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

from libs.common import topics
from libs.common.bus.admin import ensure_topics
from libs.devstack._process import StartedInContext
from libs.devstack.broker import EmbeddedBroker
from libs.devstack.postgres import EmbeddedPostgres
from libs.devstack.services import ServiceProcess, ServiceSpec, discover_services

_log = logging.getLogger(__name__)


class Stack(StartedInContext):
    """A broker and a database with the loop's topics, and the services started on them.

    `CLOSELOOP_KAFKA_BOOTSTRAP` and `CLOSELOOP_DATABASE_URL` in `environ` point the stack at
    infrastructure that already runs; whichever is unset is started embedded on loopback, with its
    files under `state_dir`. `broker_advertised_port` makes the embedded broker advertise (and
    the services bootstrap from) another port, where a proxy in front of it listens.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        log_dir: Path | None = None,
        fast: bool = False,
        environment: str = "development",
        admin_token: str | None = None,
        broker_port: int | None = None,
        broker_advertised_port: int | None = None,
        postgres_port: int | None = None,
        partitions: int = 12,
        replication_factor: int = 1,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._environ = dict(os.environ if environ is None else environ)
        self.state_dir = state_dir
        self.log_dir = log_dir or state_dir / "logs"
        self.environment = environment
        self.admin_token = (
            admin_token or self._environ.get("CLOSELOOP_ADMIN_TOKEN") or secrets.token_urlsafe(24)
        )
        self.tracking_secret = self._environ.get(
            "CLOSELOOP_TRACKING_SECRET"
        ) or secrets.token_urlsafe(32)
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.broker: EmbeddedBroker | None = None
        self.postgres: EmbeddedPostgres | None = None
        if not self._environ.get("CLOSELOOP_KAFKA_BOOTSTRAP"):
            self.broker = EmbeddedBroker(
                self.log_dir, broker_port, advertised_port=broker_advertised_port
            )
        if not self._environ.get("CLOSELOOP_DATABASE_URL"):
            self.postgres = EmbeddedPostgres(
                state_dir / "postgres", postgres_port, fast=fast, log_dir=self.log_dir
            )
        self.services: list[ServiceProcess] = []
        self._cleanup = contextlib.AsyncExitStack()

    @property
    def kafka_bootstrap(self) -> str:
        if self.broker is not None:
            return self.broker.bootstrap
        return self._environ["CLOSELOOP_KAFKA_BOOTSTRAP"]

    @property
    def database_url(self) -> str:
        """The SQLAlchemy (asyncpg) URL of the database every service uses."""
        if self.postgres is not None:
            return self.postgres.url
        return self._environ["CLOSELOOP_DATABASE_URL"]

    def env(self) -> dict[str, str]:
        """The `CLOSELOOP_*` variables a child process needs to join this stack."""
        env = {
            "CLOSELOOP_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "CLOSELOOP_DATABASE_URL": self.database_url,
            "CLOSELOOP_ADMIN_TOKEN": self.admin_token,
            "CLOSELOOP_TRACKING_SECRET": self.tracking_secret,
            "CLOSELOOP_ENVIRONMENT": self.environment,
            "CLOSELOOP_TOPIC_PARTITIONS": str(self.partitions),
            "CLOSELOOP_TOPIC_REPLICATION_FACTOR": str(self.replication_factor),
        }
        if self.broker is not None:
            # The embedded broker has no idempotent producer support.
            env["CLOSELOOP_KAFKA_IDEMPOTENCE"] = "false"
        elif "CLOSELOOP_KAFKA_IDEMPOTENCE" in self._environ:
            env["CLOSELOOP_KAFKA_IDEMPOTENCE"] = self._environ["CLOSELOOP_KAFKA_IDEMPOTENCE"]
        return env

    async def start(self) -> None:
        """Start what is embedded and create the topics; on failure, stop what did start."""
        try:
            if self.broker is not None:
                await self.broker.start()
                self._cleanup.push_async_callback(self.broker.stop)
            if self.postgres is not None:
                await self.postgres.start()
                self._cleanup.push_async_callback(self.postgres.stop)
            await ensure_topics(
                self.kafka_bootstrap, topics.ALL, self.partitions, self.replication_factor
            )
        except BaseException:
            await self.stop()
            raise

    async def start_services(
        self, specs: Sequence[ServiceSpec] | None = None, ready_timeout: float = 60.0
    ) -> list[ServiceProcess]:
        """Migrate every service, then start them all and wait until each is ready."""
        chosen = discover_services() if specs is None else list(specs)
        processes = [ServiceProcess.from_spec(s, self.env(), log_dir=self.log_dir) for s in chosen]
        for process in processes:
            _log.info("migrating %s", process.name)
            await process.migrate()
        for process in processes:
            process.start()
            self.services.append(process)
            self._cleanup.push_async_callback(process.stop)
        for process in processes:
            await process.wait_ready(ready_timeout)
        return processes

    async def stop(self) -> None:
        """Stop everything in the reverse order it started: services, database, broker."""
        await self._cleanup.aclose()
        self.services.clear()

"""How a service process is put together and started: `python -m services.<name> [migrate]`."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.common.api import database_state
from libs.common.app import run
from libs.common.bus import EventProducer, OutboxRelay
from libs.common.bus.inbox import inbox_retained
from libs.common.db import create_engine, upgrade
from libs.common.lifecycle import ReadinessCheck, Worker, broker_check, database_check
from libs.common.retention import Retention
from libs.common.settings import Settings


class DatabaseEngine:
    """The engine as a worker: nothing to start, its pool closed last at shutdown."""

    name = "database"

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self.engine.dispose()

    def is_alive(self) -> bool:
        return True


@dataclass(frozen=True)
class BusParts:
    """What every service with a database and events has: its engine, producer, relay and the
    retention of its inbox (to which the service adds its own kinds: `retention.keep`)."""

    database: DatabaseEngine
    producer: EventProducer
    relay: OutboxRelay
    retention: Retention

    @property
    def engine(self) -> AsyncEngine:
        return self.database.engine

    def workers(self, *consumers: Worker) -> list[Worker]:
        """Started in this order, stopped in reverse: consumers stop first, the database last."""
        return [self.database, self.producer, self.relay, self.retention, *consumers]

    def app_state(self, settings: Settings) -> dict[str, object]:
        """What the routes read from `app.state`: the `database` their stores open
        transactions on, and the `relay` to wake once they wrote the outbox."""
        return {**database_state(self.engine, settings.schema_name), "relay": self.relay}

    def readiness_checks(self, settings: Settings) -> list[ReadinessCheck]:
        return [database_check(self.engine), broker_check(settings.kafka_bootstrap)]


def bus_parts(settings: Settings) -> BusParts:
    engine = create_engine(settings)
    producer = EventProducer(settings)
    relay = OutboxRelay(
        engine,
        producer,
        settings.schema_name,
        batch_size=settings.outbox_batch_rows,
        poll_interval_ms=settings.outbox_poll_interval_ms,
    )
    retention = Retention(
        engine,
        settings.schema_name,
        [inbox_retained(settings.schema_name, settings.inbox_retention_hours)],
        every_seconds=settings.retention_interval_s,
        batch_rows=settings.retention_batch_rows,
    )
    return BusParts(DatabaseEngine(engine), producer, relay, retention)


def main(
    settings: Settings,
    create_app: Callable[[Settings], FastAPI],
    migrations_dir: Path,
    argv: Sequence[str] | None = None,
) -> int:
    """`migrate` applies the service's migrations and exits; no argument serves HTTP."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments == ["migrate"]:
        upgrade(settings, migrations_dir)
        return 0
    if arguments:
        print(f"usage: python -m services.{settings.service_name} [migrate]", file=sys.stderr)
        return 2
    run(create_app(settings), settings)
    return 0

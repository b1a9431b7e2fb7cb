"""A database that goes silent (its host hung, or the path to it drops packets without a reset):
a statement fails after `database_command_timeout_ms` instead of waiting for ever, its
connection is closed rather than pooled again, and a consumer's batch is retried until the
database answers again, each event's effect then written once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.common import db
from libs.common.bus import Batch
from libs.common.bus.driver import raw_driver_connection
from libs.common.settings import Settings
from libs.devstack._process import LOOPBACK, free_port
from libs.devstack.stack import Stack
from tests.events import behaviour
from tests.integration.chaos.proxy import TcpProxy
from tests.integration.support import (
    consuming,
    publish,
    throwaway_bus,
    wait_for,
)

pytestmark = pytest.mark.integration

COMMAND_TIMEOUT_MS = 1_000
# Far beyond the command timeout and the connection's close after it, far below for ever.
GIVES_UP_WITHIN_SECONDS = 30.0


@pytest_asyncio.fixture(loop_scope="session")
async def proxied_database_url(stack: Stack) -> AsyncIterator[tuple[str, TcpProxy]]:
    """The stack's database behind a proxy that can go silent: its URL, and the proxy."""
    database = urlsplit(stack.database_url)
    assert database.port is not None
    proxy = TcpProxy(LOOPBACK, free_port(), database.hostname or LOOPBACK, database.port)
    await proxy.start()
    try:
        yield stack.database_url.replace(f":{database.port}/", f":{proxy.listen_port}/"), proxy
    finally:
        proxy.thaw()
        await proxy.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def engine(proxied_database_url: tuple[str, TcpProxy]) -> AsyncIterator[AsyncEngine]:
    url, _ = proxied_database_url
    settings = Settings(
        service_name="silent", database_url=url, database_command_timeout_ms=COMMAND_TIMEOUT_MS
    )
    engine = db.create_engine(settings)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.begin() as connection:
        return int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_statement_the_database_never_answers_fails_and_its_connection_is_closed(
    engine: AsyncEngine, proxied_database_url: tuple[str, TcpProxy]
) -> None:
    _, proxy = proxied_database_url
    silent_pid = await _backend_pid(engine)  # one pooled connection, used again below
    proxy.freeze()
    try:
        statement = asyncio.create_task(_backend_pid(engine))
        done, _ = await asyncio.wait({statement}, timeout=GIVES_UP_WITHIN_SECONDS)
        assert statement in done, "the statement still waits on a database that does not answer"
        assert isinstance(statement.exception(), TimeoutError)
    finally:
        proxy.thaw()
    # What the silent connection held arrives now; it must not be handed out again.
    assert await _backend_pid(engine) != silent_pid


async def test_a_connection_returned_inside_a_transaction_is_not_handed_out_again(
    engine: AsyncEngine,
) -> None:
    """The pool's rollback on return knows only the transactions SQLAlchemy began: one begun
    on the driver (as a statement cut short can leave it) would carry into the next user's."""
    async with engine.connect() as connection:
        driver = await raw_driver_connection(connection)
        await driver.execute("BEGIN")
        stale_pid = await driver.fetchval("SELECT pg_backend_pid()")
    async with engine.connect() as connection:
        driver = await raw_driver_connection(connection)
        assert not driver.is_in_transaction()
        assert await driver.fetchval("SELECT pg_backend_pid()") != stale_pid


async def test_a_batch_on_a_silent_database_is_retried_and_applied_once_it_answers(
    stack: Stack, proxied_database_url: tuple[str, TcpProxy]
) -> None:
    url, proxy = proxied_database_url
    async with throwaway_bus(
        stack.kafka_bootstrap,
        url,
        "silent",
        database_command_timeout_ms=COMMAND_TIMEOUT_MS,
        handler_retry_backoff_ms=20,
    ) as bus:
        applied = f"{bus.settings.schema_name}.applied"
        async with bus.engine.begin() as connection:
            await connection.execute(text(f"CREATE TABLE {applied} (event_id text NOT NULL)"))

        async def apply(batch: Batch) -> None:
            await batch.session.execute(
                text(f"INSERT INTO {applied} (event_id) SELECT unnest(CAST(:ids AS text[]))"),
                {"ids": [event.id for event in batch.events]},
            )

        async def rows() -> tuple[int, int]:
            async with bus.engine.connect() as connection:
                counted = await connection.execute(
                    text(f"SELECT count(*), count(DISTINCT event_id) FROM {applied}")
                )
                total, distinct = counted.one()
                return int(total), int(distinct)

        before_silence = [behaviour(f"prf_silent_{index}") for index in range(10)]
        during_silence = [behaviour(f"prf_silent_{index}") for index in range(10)]
        async with consuming(bus, apply) as consumer:
            await publish(stack.kafka_bootstrap, before_silence, topic=bus.topic)

            async def first_applied() -> bool:
                return (await rows())[0] == len(before_silence)

            await wait_for(first_applied, within=60, what="the first events applied")
            retried = _batch_retries(consumer.group)
            proxy.freeze()
            try:
                await publish(stack.kafka_bootstrap, during_silence, topic=bus.topic)

                async def batch_failed() -> bool:
                    return _batch_retries(consumer.group) > retried

                await wait_for(
                    batch_failed,
                    within=GIVES_UP_WITHIN_SECONDS,
                    what="the batch to fail on the silent database",
                )
                assert consumer.is_alive()
            finally:
                proxy.thaw()
            everything = len(before_silence) + len(during_silence)

            async def all_applied() -> bool:
                return (await rows())[0] >= everything

            await wait_for(all_applied, within=60, what="every event applied after the silence")
        assert await rows() == (everything, everything), "each event's effect exactly once"


def _batch_retries(group: str) -> float:
    value = REGISTRY.get_sample_value("closeloop_consumer_batch_retries_total", {"group": group})
    return value or 0.0

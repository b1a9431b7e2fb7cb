"""What a service's process runs beside its HTTP app (workers) and what it must reach (checks)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from typing import Any, Protocol, runtime_checkable

from aiokafka.client import AIOKafkaClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

_CHECK_TIMEOUT_SECONDS = 2.0
_log = logging.getLogger(__name__)


class Worker(Protocol):
    """A long-running task the app's lifespan starts and stops: a bus consumer, an outbox relay."""

    name: str

    async def start(self) -> None:
        """Begin working; return once the work runs in the background."""

    async def stop(self) -> None:
        """Finish gracefully: commit what is done, then return."""

    def is_alive(self) -> bool:
        """Whether it is still working (a consumer still polling, a relay still looping)."""


class BackgroundLoop(ABC):
    """A worker whose work is one coroutine: started as a task, cancelled to stop.

    Cancelling is a graceful stop for these loops: a cancelled transaction rolls back, and what
    it had claimed is claimed again at the next start.
    """

    name: str
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def is_alive(self) -> bool:
        return self._task is not None and not self._task.done()

    @abstractmethod
    async def _run(self) -> None:
        """The loop; runs until cancelled."""


class DueWorkLoop(BackgroundLoop):
    """A worker that claims due work in batches from its tables (timers, reviews): one batch
    after another while batches come back full, then a pause of `poll_interval_seconds`.

    `work_due` claims and handles one batch in one transaction and says how many it claimed.
    A failing batch is logged and tried again after a growing pause, so an outage of the
    database slows the loop down without stopping it. Stopping ends the pause at once; a batch
    cancelled in its transaction rolls back, and its work stays due for the next start.
    """

    retry_backoff_seconds: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0)

    def __init__(self, name: str, *, poll_interval_seconds: float, batch_size: int) -> None:
        self.name = name
        self.batch_size = batch_size
        self._poll_interval = poll_interval_seconds
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        self._stopping.clear()
        await super().start()

    async def stop(self) -> None:
        self._stopping.set()
        await super().stop()

    @abstractmethod
    async def work_due(self) -> int:
        """Claim and handle one batch of due work; how many items were claimed."""

    async def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                claimed = await self.work_due()
                failures = 0
            except Exception:
                backoff = self.retry_backoff_seconds
                delay = backoff[min(failures, len(backoff) - 1)]
                failures += 1
                _log.exception("%s failed; retrying in %gs", self.name, delay)
                await self._pause(delay)
                continue
            if claimed < self.batch_size:
                await self._pause(self._poll_interval)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)


class ReadinessCheck(Protocol):
    """One dependency `/readyz` probes; `check` raises when the dependency is not usable."""

    name: str

    async def check(self) -> None:
        """Return when the dependency answers; raise with the reason when it does not."""


@runtime_checkable
class ClosableCheck(Protocol):
    """A readiness check holding a connection of its own, closed when the app shuts down."""

    async def aclose(self) -> None:
        """Release the connection the check opened."""


class _DatabaseCheck:
    def __init__(self, engine: AsyncEngine, timeout: float) -> None:
        self.name = "database"
        self._engine = engine
        self._timeout = timeout

    async def check(self) -> None:
        async with asyncio.timeout(self._timeout), self._engine.connect() as connection:
            await connection.execute(text("SELECT 1"))


class _BrokerCheck:
    """Keeps one Kafka client between probes, so a probe costs one metadata request."""

    def __init__(self, bootstrap: str, timeout: float) -> None:
        self.name = "broker"
        self._bootstrap = bootstrap
        self._timeout = timeout
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def check(self) -> None:
        async with self._lock:
            try:
                async with asyncio.timeout(self._timeout):
                    await self._fetch_metadata()
            except BaseException:
                # A client that failed once may hold half-open connections: start afresh next time.
                await self._close_client()
                raise

    async def aclose(self) -> None:
        async with self._lock:
            await self._close_client()

    async def _fetch_metadata(self) -> None:
        if self._client is None:
            self._client = AIOKafkaClient(
                bootstrap_servers=self._bootstrap,
                request_timeout_ms=int(self._timeout * 1000),
            )
            await self._client.bootstrap()
        else:
            await self._client.fetch_all_metadata()

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()


def database_check(
    engine: AsyncEngine, *, timeout: float = _CHECK_TIMEOUT_SECONDS
) -> ReadinessCheck:
    """Ready when the database answers `SELECT 1`; the engine stays the caller's to dispose."""
    return _DatabaseCheck(engine, timeout)


def broker_check(bootstrap: str, *, timeout: float = _CHECK_TIMEOUT_SECONDS) -> ReadinessCheck:
    """Ready when a Kafka broker at `bootstrap` returns the cluster's metadata."""
    return _BrokerCheck(bootstrap, timeout)

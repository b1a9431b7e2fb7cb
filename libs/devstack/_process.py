"""Child-process plumbing shared by the broker, the database and the services."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

LOOPBACK = "127.0.0.1"
_POLL_INTERVAL_S = 0.05
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
# prctl from the C library, loaded here: the child of a fork must not import or load anything.
_prctl: Callable[..., int] | None = (
    ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
)


class ProcessExitedError(RuntimeError):
    """A child process exited while we were waiting for it to become ready."""


# Ports `free_port` picks from lie between this and the kernel's range for outgoing connections.
_LOWEST_PICKED_PORT = 10_000
_EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()
_pick = random.Random()


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now, for something that will listen on it soon.

    A port is picked, then bound later, when what was given it starts. Two things could take it
    meanwhile: this process handing it out again (seen in CI: content and dispatch given one
    port, dispatch bound it, and content's readiness check was answered by dispatch), and the
    kernel giving it to an outgoing connection. So no port is handed out twice by one process,
    and ports come from below the kernel's range for outgoing connections where there is room.
    """
    below = _ephemeral_low()
    for _ in range(1_000):
        port = (
            _pick.randrange(_LOWEST_PICKED_PORT, below)
            if below > _LOWEST_PICKED_PORT
            else _any_port(host)
        )
        if port not in _handed_out and port_is_free(port, host):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free TCP port found on {host}")


def _ephemeral_low() -> int:
    """The lowest port the kernel gives outgoing connections (0 where it cannot be read)."""
    try:
        return int(_EPHEMERAL_PORTS.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _any_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could listen on `port` on `host` now: no listener is there.

    Bound with SO_REUSEADDR, as uvicorn and PostgreSQL bind, so that the answer is whether they
    could: without it the connections of a server just stopped, lingering in TIME_WAIT for up
    to a minute, would count as a listener. A listener still makes the bind fail.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def spawn(
    args: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    owner: tuple[int, int] | None = None,
    parent_death_signal: signal.Signals = signal.SIGTERM,
) -> subprocess.Popen[bytes]:
    """Start `args` (as the `owner` uid and gid if given) with its output appended to `log_path`.

    The child gets its own session so a Ctrl-C in the terminal reaches only us: we stop the
    children in order (services before the broker and database they need). Should we die
    without stopping them (SIGKILL, a timeout's SIGTERM, a closed terminal), the child gets
    `parent_death_signal` on Linux, so no broker, database or service is left running.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            user=owner[0] if owner else None,
            group=owner[1] if owner else None,
            # Without this the child would keep root's supplementary groups.
            extra_groups=[] if owner else None,
            start_new_session=True,
            preexec_fn=_dies_with(os.getpid(), parent_death_signal) if _prctl else None,
        )


def _dies_with(parent: int, sig: signal.Signals) -> Callable[[], None]:
    """What the child runs before `exec`: get `sig` when `parent` dies. Run after the switch to
    the owner's uid (which would clear the setting), and it exits at once if `parent` is
    already gone, since the signal would then never come."""

    def arrange() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return arrange


def log_tail(log_path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log file, for error messages that show what went wrong."""
    try:
        text = log_path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {log_path})"
    return "\n".join(text.splitlines()[-lines:])


def exited_error(what: str, proc: subprocess.Popen[bytes], log_path: Path) -> ProcessExitedError:
    """The error to raise when `proc` died before it was ready."""
    return ProcessExitedError(
        f"{what} exited with code {proc.returncode} before it was ready; "
        f"last lines of {log_path}:\n{log_tail(log_path)}"
    )


async def wait_until_ready(
    what: str,
    probe: Callable[[], Awaitable[bool]],
    proc: subprocess.Popen[bytes],
    log_path: Path,
    within: float,
) -> None:
    """Poll `probe` until it returns True; fail early if `proc` exits, or after `within` seconds.

    A deadline of our own rather than the caller's `asyncio.timeout`: the error we raise carries
    the tail of the process's log, which is what a reader needs to see why it never got ready.
    """
    deadline = time.monotonic() + within
    while True:
        if proc.poll() is not None:
            raise exited_error(what, proc, log_path)
        if await probe():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{what} was not ready after {within:.0f}s; "
                f"last lines of {log_path}:\n{log_tail(log_path)}"
            )
        await asyncio.sleep(_POLL_INTERVAL_S)


async def wait_for_exit(proc: subprocess.Popen[bytes], within: float) -> int | None:
    """The exit code of `proc`, or None if it is still running after `within` seconds."""
    deadline = time.monotonic() + within
    while proc.poll() is None:
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(_POLL_INTERVAL_S)
    return proc.returncode


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child and everything it started (it leads its own process group)."""
    if proc.poll() is not None:
        return
    # The group may already be gone between poll() and killpg(): that is the outcome we want.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def terminate(proc: subprocess.Popen[bytes], sig: signal.Signals, grace: float) -> int:
    """Ask the child to stop with `sig`; SIGKILL its group if it is still there after `grace` s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        if await wait_for_exit(proc, grace) is None:
            kill_group(proc)
    # After SIGKILL the kernel reaps promptly; wait() here only collects the status.
    return proc.wait()


class StartedInContext(ABC):
    """`async with thing:` starts it and stops it, whatever happens inside."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

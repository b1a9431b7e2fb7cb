"""How a benchmark prints its figures and keeps them as JSON for comparison between commits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from libs.devstack import ServiceProcess


@contextlib.asynccontextmanager
async def serving(
    processes: Mapping[str, ServiceProcess], ready: str
) -> AsyncIterator[Mapping[str, ServiceProcess]]:
    """The services migrated, started and ready (`ready` printed, e.g. "loop: seven services
    ready"), and stopped at the end however the bench ends."""
    try:
        await asyncio.gather(*(process.migrate() for process in processes.values()))
        for process in processes.values():
            process.start()
        await asyncio.gather(*(process.wait_ready(120) for process in processes.values()))
        print(ready)
        yield processes
    finally:
        await asyncio.gather(*(process.stop() for process in processes.values()))


# BENCH_RESULTS_DIR elsewhere: `python -m bench loop-compare` gives each run its own.
RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS_DIR") or Path(__file__).parent / "results")


@dataclass(frozen=True)
class Rate:
    """`count` things done in `seconds`."""

    name: str
    count: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class Ratio:
    name: str
    value: float
    target: float

    @property
    def met(self) -> bool:
        return self.value >= self.target


def print_table(title: str, rates: list[Rate], ratios: list[Ratio]) -> None:
    print(f"\n{title}")
    print(f"{'measure':<52} {'count':>9} {'seconds':>8} {'per second':>12}")
    for rate in rates:
        print(f"{rate.name:<52} {rate.count:>9} {rate.seconds:>8.2f} {rate.per_second:>12,.0f}")
    for ratio in ratios:
        verdict = "met" if ratio.met else "NOT met"
        print(f"ratio {ratio.name}: {ratio.value:.2f} (target >= {ratio.target}: {verdict})")


def save(name: str, rates: list[Rate], ratios: list[Ratio]) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    document = {
        "benchmark": name,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": _cpus()},
        "rates": [{**asdict(rate), "per_second": rate.per_second} for rate in rates],
        "ratios": [{**asdict(ratio), "met": ratio.met} for ratio in ratios],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def _cpus() -> int:
    return os.cpu_count() or 0


def processes_label(count: int) -> str:
    """ "1 process", "2 processes": how a figure names the service processes it measured."""
    return f"{count} process" if count == 1 else f"{count} processes"


def services_cpu_seconds(services: Iterable[ServiceProcess]) -> float:
    """User + system CPU seconds the services' processes (and their children) used so far."""
    return sum(tree_cpu_seconds(service.pid) for service in services)


def process_tree(pid: int | None) -> list[psutil.Process]:
    """A process and its live descendants; none when it is not there."""
    if pid is None:
        return []
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def tree_cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process and its descendants so far: those alive, and
    those that have exited and been waited for, which their parent's children times count.

    Summing the live processes alone loses what any of them used once it exits: PostgreSQL's
    backends and autovacuum workers, or a service's worker processes.
    """
    total = 0.0
    for process in process_tree(pid):
        with contextlib.suppress(psutil.Error):  # it exited meanwhile: its parent counts it
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all the machine's cores were busy so far (Linux /proc/stat; 0 elsewhere)."""
    try:
        first_line = Path("/proc/stat").read_text().split("\n", 1)[0]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, first_line.split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds the process has used so far (Linux /proc; 0 elsewhere)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def percentile(ordered: Sequence[float], share: float) -> float:
    """Nearest rank: the smallest value with at least `share` of the values at or below it."""
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


class StackProcesses:
    """A scratch stack's broker and PostgreSQL among the machine's processes, told by the
    address each listens on: another broker or database on the machine (tests run beside the
    bench, say) is not the stack's, and its CPU is not counted as the stack's."""

    def __init__(self, bootstrap: str, postgres_dsn: str) -> None:
        self._broker_address = bootstrap
        self._postgres_port = str(urllib.parse.urlsplit(postgres_dsn).port or 5432)

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU seconds so far of the broker (tansu) and of PostgreSQL (its
        postmaster and every process it started, exited ones included)."""
        used = {"broker": 0.0, "PostgreSQL": 0.0}
        for name, pid in self.pids():
            used[name] += tree_cpu_seconds(pid)
        return used

    def pids(self) -> list[tuple[str, int]]:
        """("broker", pid) of the broker and ("PostgreSQL", pid) of the postmaster."""
        found = []
        for process in psutil.process_iter(["name", "ppid", "cmdline"]):
            name = process.info["name"] or ""
            arguments = process.info["cmdline"] or []
            if name.startswith("tansu") and any(self._broker_address in a for a in arguments):
                found.append(("broker", process.pid))
            elif (
                name == "postgres"
                and _process_name(process.info["ppid"]) != "postgres"  # a postmaster
                and option(arguments, "-p") == self._postgres_port
            ):
                found.append(("PostgreSQL", process.pid))
        return found


def option(arguments: Sequence[str], flag: str) -> str | None:
    """The value after `flag` in a command line; None when it is not there."""
    for index, argument in enumerate(arguments[:-1]):
        if argument == flag:
            return arguments[index + 1]
    return None


def _process_name(pid: int | None) -> str:
    try:
        return psutil.Process(pid).name() if pid else ""
    except psutil.Error:
        return ""

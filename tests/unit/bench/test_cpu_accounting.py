"""The benchmarks' CPU accounting: a process tree keeps what its exited children used."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.report import machine_busy_seconds, option, process_cpu_seconds, tree_cpu_seconds

# Burns about 0.3 s of CPU, then exits.
_BURN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"


def test_a_tree_counts_a_child_that_exited_and_the_process_alone_does_not() -> None:
    tree_before = tree_cpu_seconds(os.getpid())
    alone_before = process_cpu_seconds(os.getpid())
    subprocess.run([sys.executable, "-c", _BURN], check=True)
    assert tree_cpu_seconds(os.getpid()) - tree_before >= 0.3
    assert process_cpu_seconds(os.getpid()) - alone_before < 0.3


def test_a_tree_counts_a_child_still_running() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _BURN + "\nimport sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        before = tree_cpu_seconds(os.getpid())
        deadline = time.monotonic() + 30
        while tree_cpu_seconds(child.pid) < 0.3:  # the child's own burn, seen live
            assert child.poll() is None and time.monotonic() < deadline
        assert tree_cpu_seconds(os.getpid()) - before > 0
    finally:
        child.communicate(b"")


def test_the_machine_was_busy_at_least_as_long_as_a_process_burned() -> None:
    before = machine_busy_seconds()
    subprocess.run([sys.executable, "-c", _BURN], check=True)
    assert machine_busy_seconds() - before >= 0.25  # clock ticks: a little slack


def test_a_process_that_is_not_there_used_nothing() -> None:
    assert tree_cpu_seconds(None) == 0.0
    assert tree_cpu_seconds(2**22 + 12345) == 0.0


def test_a_command_line_option_is_the_argument_after_its_flag() -> None:
    arguments = ["postgres", "-D", "/data", "-h", "127.0.0.1", "-p", "25512"]
    assert option(arguments, "-p") == "25512"
    assert option(arguments, "-k") is None
    assert option(["postgres", "-p"], "-p") is None

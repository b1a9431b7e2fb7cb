"""The examples in README.md and docs/: fenced blocks, which of them run, and running them.

A ```` ```sh ```` block is an example that runs: its commands, as written, against the stack
`make up` starts (services on their usual ports, `$CLOSELOOP_ADMIN_TOKEN` set, a webhook
receiver on port 9000). ```` ```sh retry ```` marks a read that may have to wait for the loop
(a profile, a segment's members, a message): it is repeated until it succeeds.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from libs.devstack.services import REPO_ROOT

_FENCE = re.compile(r"^```(.*)$")
_LOCAL_PORT = re.compile(r"\b(?:localhost|127\.0\.0\.1):(\d+)\b")
_COMMAND_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Block:
    """One fenced block: where it starts, its info string and its text."""

    document: Path
    line: int
    info: str
    text: str

    @property
    def runs(self) -> bool:
        return self.info.split()[:1] == ["sh"]

    @property
    def retried(self) -> bool:
        return self.runs and "retry" in self.info.split()[1:]

    def __str__(self) -> str:
        return f"{self.document.relative_to(REPO_ROOT)}:{self.line}"


def documents() -> list[Path]:
    """README.md, then every page under docs/, in path order."""
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]


def blocks(document: Path) -> list[Block]:
    found: list[Block] = []
    opened: tuple[int, str] | None = None
    lines: list[str] = []
    for number, line in enumerate(document.read_text().splitlines(), start=1):
        fence = _FENCE.match(line)
        if fence is None:
            if opened is not None:
                lines.append(line)
            continue
        if opened is None:
            opened, lines = (number, fence.group(1).strip()), []
        else:
            found.append(Block(document, opened[0], opened[1], "\n".join(lines)))
            opened = None
    return found


def on_this_stack(text: str, addresses: Mapping[int, str]) -> str:
    """`text` with each `localhost:<port>` of `make up` turned into where the test runs it."""

    def moved(match: re.Match[str]) -> str:
        return addresses.get(int(match.group(1)), match.group(0))

    return _LOCAL_PORT.sub(moved, text)


@dataclass
class Outcome:
    returncode: int
    output: str


class Shell:
    """Runs a document's blocks in order, as one reader's terminal would: a variable a block
    sets is there for the next ones."""

    def __init__(self, env: Mapping[str, str], state_file: Path) -> None:
        self.env = dict(env)
        self._state_file = state_file

    async def run(self, text: str) -> Outcome:
        # -a exports every assignment, so that the environment dumped at the end keeps it.
        script = f"set -aeo pipefail\n{text}\nenv -0 > {self._state_file}\n"
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            script,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), _COMMAND_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            return Outcome(-1, f"still running after {_COMMAND_TIMEOUT_S:.0f}s")
        if process.returncode == 0:
            self.env = _environment(self._state_file.read_bytes())
        return Outcome(process.returncode or 0, output.decode(errors="replace"))


def _environment(dump: bytes) -> dict[str, str]:
    pairs = (entry.decode().partition("=") for entry in dump.split(b"\0") if entry)
    return {name: value for name, _, value in pairs}


def base_environment(admin_token: str) -> dict[str, str]:
    """What a reader's terminal has after `eval "$(python -m libs.devstack env)"`."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "CLOSELOOP_ADMIN_TOKEN": admin_token,
    }

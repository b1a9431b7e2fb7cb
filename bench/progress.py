"""Progress of a benchmark run as plain stderr lines: readable on a terminal and in a CI log.

The runner opens a step per scenario; scenarios report a live counter with `note` where that is
cheap. A heartbeat repeats the step, its elapsed time and the last note every few seconds, so a
long measurement never looks hung.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from typing import TextIO

HEARTBEAT_SECONDS = 15.0


class Progress:
    """Which step of how many runs, since when, and what it last said about itself."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self._stream = stream
        self._started = time.monotonic()
        self._label = ""
        self._step_started = 0.0
        self._note = ""

    @contextlib.asynccontextmanager
    async def step(self, label: str) -> AsyncIterator[None]:
        """Announce the step, keep a heartbeat while it runs, say how long it took."""
        self._label, self._note, self._step_started = label, "", time.monotonic()
        self._say("started")
        heartbeat = asyncio.create_task(self._beat())
        try:
            yield
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            self._say(f"finished in {time.monotonic() - self._step_started:.0f} s")
            self._label = ""

    def note(self, text: str) -> None:
        """The current step's live counter; shown at the next heartbeat."""
        self._note = text

    def say(self, text: str) -> None:
        """A line now, outside the heartbeat (a phase starting within a step)."""
        self._say(text)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            self._say(f"{time.monotonic() - self._step_started:.0f} s" + self._noted())

    def _noted(self) -> str:
        return f", {self._note}" if self._note else ""

    def _say(self, text: str) -> None:
        elapsed = time.monotonic() - self._started
        minutes, seconds = divmod(int(elapsed), 60)
        where = f" {self._label}:" if self._label else ""
        print(f"[bench {minutes:02d}:{seconds:02d}]{where} {text}", file=self._stream, flush=True)


PROGRESS = Progress()
"""The run's one progress display; scenarios call `PROGRESS.note(...)` on it."""

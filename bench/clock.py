"""Timing a consumer's handler from its first batch: the group join is not the work measured."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Iterator

from bench.progress import PROGRESS
from libs.common.app import settle_garbage_collector
from libs.common.bus import Batch, BatchHandler


@contextlib.contextmanager
def garbage_collected_as_in_services() -> Iterator[None]:
    """Inside, the cyclic GC runs as in a service after start-up (`settle_garbage_collector`:
    the heap so far frozen, the young generation collected less often); as before after."""
    threshold = gc.get_threshold()
    settle_garbage_collector()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


class FirstBatchClock:
    """Wraps a batch handler and times it from its first batch until `count` events were handled.

    Handing over the last batch is the end: its commit follows at once, inside the same call.
    """

    def __init__(self, handler: BatchHandler, count: int) -> None:
        self._handler = handler
        self._count = count
        self._handled = 0
        self._started = 0.0
        self._done = asyncio.Event()

    async def __call__(self, batch: Batch) -> None:
        if not self._handled:
            self._started = time.perf_counter()
        await self._handler(batch)
        self._handled += len(batch.events)
        PROGRESS.note(f"{self._handled:,} of {self._count:,} events handled")
        if self._handled >= self._count:
            self._done.set()

    async def seconds(self, within: float = 600) -> float:
        """Wait until every event was handled; the seconds from the first batch."""
        await asyncio.wait_for(self._done.wait(), timeout=within)
        return time.perf_counter() - self._started

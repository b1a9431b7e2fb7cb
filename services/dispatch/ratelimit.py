"""Per-channel token buckets: a channel's messages per second, within one process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    """`rate` tokens a second, up to `burst` saved; `acquire` waits for one."""

    def __init__(
        self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self._burst = max(1.0, burst if burst is not None else rate)
        self._tokens = self._burst
        self._clock = clock
        self._updated = clock()
        self._lock = asyncio.Lock()

    def wait_time(self) -> float:
        """Take a token if there is one (0.0); otherwise how long until there is one."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate

    async def acquire(self) -> None:
        # One waiter at a time, so waiters are served in order and none starves.
        async with self._lock:
            delay = self.wait_time()
            while delay > 0:
                await asyncio.sleep(delay)  # a refill is a time, not an event to wait for
                delay = self.wait_time()

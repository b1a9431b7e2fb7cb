"""Stopping a Kafka client that broke, without letting how it breaks reach the caller."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

_log = logging.getLogger(__name__)


class _Stoppable(Protocol):
    async def stop(self) -> Any: ...


async def stop_broken_client(client: _Stoppable, *, within: float) -> None:
    """Stop `client` in a task of its own, waiting at most `within` seconds.

    A broken aiokafka client can fail to stop in three ways, each seen after a broker cut: it
    raises; it hangs on what broke it; or it raises CancelledError, because
    `Fetcher.close()` awaits a fetch task it has just cancelled. Awaited directly, that last
    one looks like the caller's own cancellation and ends the caller's task. In a task of its
    own, each is only the abandoned client's outcome; a cancellation of the caller still
    reaches the caller.
    """
    stopping = asyncio.ensure_future(client.stop())
    await asyncio.wait({stopping}, timeout=within)
    if not stopping.done():
        stopping.cancel()
        _log.warning("a broken Kafka client did not stop in %.0f s; abandoned", within)
        return
    with contextlib.suppress(BaseException):  # retrieved, so asyncio does not report it
        stopping.result()

"""A small asyncio TCP proxy that can cut every connection and refuse new ones, then restore.

The services reach the broker only through it (the broker advertises the proxy's address), so
`cut()` is the network between them and the broker going away: live connections are reset and
new ones are refused (the listening socket is closed), until `restore()` listens again.

`freeze()` is the other way a network fails: it goes silent. Connections stay open and new ones
are accepted, but nothing passes either way until `thaw()`; to a peer that is a host that hung,
or a path that drops packets without a reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

_log = logging.getLogger(__name__)
_CHUNK = 65536
T = TypeVar("T")


class TcpProxy:
    """Forwards `host:listen_port` to `upstream_host:upstream_port`, byte for byte."""

    def __init__(self, host: str, listen_port: int, upstream_host: str, upstream_port: int) -> None:
        self.host = host
        self.listen_port = listen_port
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.accepted = 0
        self.cuts = 0
        self.dropped = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.listen_port}"

    @property
    def open(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Listen (again) on the same port."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._serve, self.host, self.listen_port, reuse_address=True
        )

    async def cut(self) -> int:
        """Refuse new connections and reset every live one; how many were reset."""
        self.cuts += 1
        if self._server is not None:
            self._server.close()
            self._server = None
        writers = list(self._writers)
        for writer in writers:
            _reset(writer)
        self._writers.clear()
        self.dropped += len(writers)
        _log.info("proxy %s cut: %d connections reset", self.address, len(writers))
        return len(writers)

    async def restore(self) -> None:
        await self.start()
        _log.info("proxy %s restored", self.address)

    def freeze(self) -> None:
        """Let nothing through, either way, and close nothing: the path goes silent."""
        self._flowing.clear()
        _log.info("proxy %s frozen", self.address)

    def thaw(self) -> None:
        """Pass what was held, and everything after it, again."""
        self._flowing.set()
        _log.info("proxy %s thawed", self.address)

    async def stop(self) -> None:
        await self.cut()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None:  # accepted in the instant before a cut closed the listener
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.upstream_host, self.upstream_port
            )
        except OSError:
            _reset(writer)
            return
        self.accepted += 1
        self._writers.update((writer, up_writer))
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._tasks.difference_update(pumps)
            for side in (writer, up_writer):
                self._writers.discard(side)
                _reset(side)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(_CHUNK):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close at once with a TCP reset (SO_LINGER 0), as a dropped network path looks to a peer."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class ProxyThread:
    """A `TcpProxy` on an event loop of its own, in its own thread: a busy test loop (the load,
    the fake providers) must not slow the path to the broker, or it would be a fault of its own.
    """

    def __init__(self, host: str, listen_port: int, upstream_host: str, upstream_port: int) -> None:
        self.proxy = TcpProxy(host, listen_port, upstream_host, upstream_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="chaos-broker-proxy", daemon=True
        )

    @property
    def listen_port(self) -> int:
        return self.proxy.listen_port

    async def start(self) -> None:
        self._thread.start()
        await self._call(self.proxy.start())

    async def cut(self) -> int:
        return await self._call(self.proxy.cut())

    async def restore(self) -> None:
        await self._call(self.proxy.restore())

    async def freeze(self) -> None:
        await self._call(self._in_loop(self.proxy.freeze))

    async def thaw(self) -> None:
        await self._call(self._in_loop(self.proxy.thaw))

    @staticmethod
    async def _in_loop(action: Callable[[], None]) -> None:
        action()

    async def stop(self) -> None:
        if not self._thread.is_alive():
            return
        await self._call(self.proxy.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join, 10)
        self._loop.close()

    async def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._loop))

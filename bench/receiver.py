"""A fast local webhook receiver for benchmarks, in its own process.

A minimal HTTP/1.1 server (asyncio.Protocol, keep-alive) that stores each `Idempotency-Key`
once and times receipts: the first and the last distinct key, and, for a message whose payload
carries `sent_at` (epoch seconds, set by the load generator), the latency from then to its
arrival. `GET /stats` tells what it saw, `GET /latencies` the latencies in arrival order,
`POST /reset` forgets. `python -m bench.receiver FD` serves on an inherited listening socket.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
import uvloop

from bench.report import Rate

_REPO = Path(__file__).resolve().parents[1]


class _Tally:
    """What the receiver saw: requests, distinct keys, when the first and last arrived, and
    (arrival, latency) pairs of the messages that said when they were sent."""

    def __init__(self) -> None:
        self.requests = 0
        self.keys: set[bytes] = set()
        self.first = 0.0
        self.last = 0.0
        self.latencies: list[tuple[float, float]] = []

    def webhook(self, head: bytes, body: bytes) -> bytes:
        now = time.monotonic()
        if not self.requests:
            self.first = now
        self.requests += 1
        key = _header(head, b"idempotency-key")
        if key not in self.keys:
            self.keys.add(key)
            self.last = now
            if b"sent_at" in body:
                self._time(body)
        return _response(b'{"id":"wh_%d"}' % len(self.keys))

    def _time(self, body: bytes) -> None:
        arrived = time.time()
        try:
            sent_at = float(orjson.loads(body)["payload"]["sent_at"])
        except (ValueError, KeyError, TypeError):
            return
        self.latencies.append((arrived, arrived - sent_at))

    def stats(self) -> bytes:
        document = {
            "requests": self.requests,
            "distinct": len(self.keys),
            "first": self.first,
            "last": self.last,
            "timed": len(self.latencies),
        }
        return _response(orjson.dumps(document))

    def latency_list(self) -> bytes:
        return _response(orjson.dumps(self.latencies))

    def reset(self) -> bytes:
        self.__init__()  # type: ignore[misc]
        return _response(b"{}")


def _response(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


def _header(head: bytes, name: bytes) -> bytes:
    start = head.lower().find(b"\r\n" + name + b":")
    if start < 0:
        return b""
    start += len(name) + 3
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip()


class _Connection(asyncio.Protocol):
    """One keep-alive connection: requests parsed as they complete, answered in order."""

    def __init__(self, tally: _Tally) -> None:
        self._tally = tally
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        answers = []
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self._buffer[:end])
            length = int(_header(head, b"content-length") or b"0")
            if len(self._buffer) < end + 4 + length:
                break
            body = bytes(self._buffer[end + 4 : end + 4 + length])
            del self._buffer[: end + 4 + length]
            answers.append(self._answer(head, body))
        if answers and self._transport is not None:
            self._transport.write(b"".join(answers))

    def _answer(self, head: bytes, body: bytes) -> bytes:
        if head.startswith(b"GET /stats"):
            return self._tally.stats()
        if head.startswith(b"GET /latencies"):
            return self._tally.latency_list()
        if head.startswith(b"POST /reset"):
            return self._tally.reset()
        return self._tally.webhook(head, body)


async def _receive(fd: int) -> None:
    listener = socket.socket(fileno=fd)
    tally = _Tally()
    server = await asyncio.get_running_loop().create_server(
        lambda: _Connection(tally), sock=listener, backlog=1024
    )
    async with server:
        await server.serve_forever()


class Receiver:
    """The receiver process, on a port bound here (so it listens before the process starts)."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(1024)
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        fd = self._listener.fileno()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.receiver", str(fd)], pass_fds=[fd], cwd=_REPO
        )
        self._http = httpx.AsyncClient(base_url=self.url, timeout=30.0)

    @property
    def pid(self) -> int:
        return self._process.pid

    async def stats(self) -> dict[str, Any]:
        response = await self._http.get("/stats")
        result: dict[str, Any] = response.json()
        return result

    async def latencies(self) -> list[tuple[float, float]]:
        """(arrival epoch seconds, latency seconds) of every timed message, in arrival order."""
        response = await self._http.get("/latencies")
        return [(arrived, latency) for arrived, latency in response.json()]

    async def reset(self) -> None:
        await self._http.post("/reset")

    async def distinct_keys(self, count: int, within: float) -> Rate:
        """Wait for `count` distinct keys; the rate from the first receipt to the last key."""
        deadline = time.monotonic() + within
        stats = await self.stats()
        while stats["distinct"] < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the receiver has {stats['distinct']} of {count} keys")
            await asyncio.sleep(0.05)
            stats = await self.stats()
        return Rate("", count, stats["last"] - stats["first"])

    async def aclose(self) -> None:
        await self._http.aclose()
        self._process.terminate()
        await asyncio.to_thread(self._process.wait, 10)
        self._listener.close()


if __name__ == "__main__":
    uvloop.run(_receive(int(sys.argv[1])))

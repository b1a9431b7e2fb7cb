"""A webhook receiver for trying the loop on one machine: `python -m libs.devstack webhook`
prints every message dispatch posts to it and answers `GET /` with all of them as JSON."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from libs.devstack._process import LOOPBACK

DEFAULT_PORT = 9000


class WebhookReceiver(ThreadingHTTPServer):
    """Keeps each JSON body posted to it, in arrival order; `GET /` lists them."""

    daemon_threads = True

    def __init__(self, port: int = DEFAULT_PORT, *, echo: bool = False) -> None:
        super().__init__((LOOPBACK, port), _Handler)
        self.received: list[Any] = []
        self.echo = echo
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server_address[1]}"

    def keep(self, body: Any) -> None:
        with self._lock:
            self.received.append(body)
        if self.echo:
            print(json.dumps(body, ensure_ascii=False), flush=True)

    def listing(self) -> bytes:
        with self._lock:
            return json.dumps(self.received, ensure_ascii=False).encode()


class _Handler(BaseHTTPRequestHandler):
    server: WebhookReceiver

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        self.server.keep(body)
        self._answer(b'{"ok": true}')

    def do_GET(self) -> None:
        self._answer(self.server.listing())

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the bodies are the news, not the access lines."""


@contextmanager
def running_receiver(port: int = 0) -> Iterator[WebhookReceiver]:
    """A receiver on `port` (0: any free one) in a background thread, stopped on exit."""
    receiver = WebhookReceiver(port)
    thread = threading.Thread(target=receiver.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.shutdown()
        receiver.server_close()
        thread.join()


def serve(port: int) -> int:
    """Receive until Ctrl-C, printing each body as it arrives."""
    receiver = WebhookReceiver(port, echo=True)
    print(f"receiving webhooks at {receiver.url} (GET it for all so far); Ctrl-C stops", flush=True)
    try:
        receiver.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        receiver.server_close()
    return 0

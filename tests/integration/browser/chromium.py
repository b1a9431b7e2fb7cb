"""Debian's headless Chromium opening a page of tests/browser, served from this machine, and the
outcome the page reports back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
from aiohttp import web

from libs.devstack import free_port
from libs.devstack._process import LOOPBACK
from libs.devstack.services import ServiceProcess

# tests/browser: the pages, and the SDKs npm installed beside them (ensure-installed.sh).
BROWSER_DIR = Path(__file__).resolve().parents[2] / "browser"
_ANSWERED = "closeloop_http_requests_total"
_INSTALL_HINT = "run tests/browser/ensure-installed.sh (make test does)"
# Those that work on a machine with no network but loopback: without the background-networking
# ones Chromium keeps calling its vendor's hosts, and each refused call is logged.
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    # The page's console, in the log the test keeps.
    "--enable-logging=stderr",
)


@dataclass
class ShopSite:
    """A web site on its own origin that serves tests/browser, and what its pages reported."""

    origin: str
    reports: list[dict[str, Any]] = field(default_factory=list)

    def url(self, page: str, **query: str) -> str:
        return f"{self.origin}/{page}?{urlencode(query)}"


def chromium_path() -> str:
    path = shutil.which("chromium")
    assert path is not None, f"Chromium is not installed: {_INSTALL_HINT}"
    return path


def require_sdk(package: str) -> Path:
    """The folder npm installed `package` in."""
    folder = BROWSER_DIR / "node_modules" / package
    assert folder.is_dir(), f"{package} is not installed: {_INSTALL_HINT}"
    return folder


@contextlib.asynccontextmanager
async def shop_site() -> AsyncIterator[ShopSite]:
    """tests/browser served on a free loopback port, with `POST /report` taking each page's
    outcome."""
    site = ShopSite(origin=f"http://{LOOPBACK}:{free_port()}")

    async def take_report(request: web.Request) -> web.Response:
        site.reports.append(orjson.loads(await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/report", take_report)
    app.router.add_static("/", BROWSER_DIR)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, int(site.origin.rsplit(":", 1)[1])).start()
    try:
        yield site
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def chromium_on(url: str, log: Path) -> AsyncIterator[None]:
    """Chromium, headless and with a profile of its own, showing `url` until the block ends."""
    with (
        tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True) as profile,
        log.open("wb") as output,
    ):
        # A session of its own: the browser's helper processes end with it, as a group.
        process = await asyncio.create_subprocess_exec(
            chromium_path(),
            *_FLAGS,
            f"--user-data-dir={profile}",
            url,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,
        )
        try:
            yield
        finally:
            await _end_group(process)


async def _end_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), timeout=10)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


def reported(site: ShopSite) -> Callable[[], Awaitable[bool]]:
    """A `wait_for` condition: a page of the site reported its outcome."""

    async def has_report() -> bool:
        return bool(site.reports)

    return has_report


async def answered(ingest: ServiceProcess) -> dict[tuple[str, str, str], int]:
    """Ingest's count of requests answered on `/v1`, by method, route and status."""
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        metrics = (await client.get("/metrics")).text
    counts: dict[tuple[str, str, str], int] = {}
    for line in metrics.splitlines():
        if not line.startswith(_ANSWERED + "{"):
            continue
        labels_text, value = line[len(_ANSWERED) + 1 :].rsplit("} ", 1)
        labels = dict(part.split("=", 1) for part in labels_text.split(","))
        labels = {name: text.strip('"') for name, text in labels.items()}
        if labels["route"].startswith("/v1/"):
            counts[labels["method"], labels["route"], labels["status"]] = int(float(value))
    return counts


async def answered_since(
    ingest: ServiceProcess, before: dict[tuple[str, str, str], int]
) -> dict[tuple[str, str, str], int]:
    """The requests ingest answered on `/v1` since it had answered `before`."""
    counts = await answered(ingest)
    return {
        key: count - before.get(key, 0)
        for key, count in counts.items()
        if count != before.get(key, 0)
    }

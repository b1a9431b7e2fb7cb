"""Debian's headless Chromium opening a page of tests/browser, served from this machine, and the
outcome the page reports back."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web

from libs.devstack import free_port
from libs.devstack._process import LOOPBACK

# tests/browser: the pages, and the SDKs npm installed beside them (ensure-installed.sh).
BROWSER_DIR = Path(__file__).resolve().parents[2] / "browser"
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
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile, log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            chromium_path(),
            *_FLAGS,
            f"--user-data-dir={profile}",
            url,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=output,
        )
        try:
            yield
        finally:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()


def reported(site: ShopSite) -> Callable[[], Awaitable[bool]]:
    """A `wait_for` condition: a page of the site reported its outcome."""

    async def has_report() -> bool:
        return bool(site.reports)

    return has_report

"""Debian's headless Chromium driven over the Chrome DevTools protocol, for the console's
browser tests: navigate, type, click, read the page, take screenshots.

Started with the flags that work on a machine with no network beyond loopback, a fresh profile,
and a DevTools port of its own (read from the profile's DevToolsActivePort).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import aiohttp

from tests.integration.support import wait_for

CHROMIUM: Final = "/usr/bin/chromium"
_FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
    "--remote-debugging-port=0",
)


class Page:
    """One tab, spoken to over its DevTools websocket."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []  # what arrived while waiting for an answer

    async def send(
        self, method: str, *, session_id: str | None = None, **params: Any
    ) -> dict[str, Any]:
        """Call a DevTools method and return its result (events in between are kept in
        `events`); in the session of a target attached with `flatten` (an out-of-process frame)
        when given."""
        call_id = next(self._ids)
        call: dict[str, Any] = {"id": call_id, "method": method, "params": params}
        if session_id is not None:
            call["sessionId"] = session_id
        await self._socket.send_json(call)
        while True:
            message = await self._socket.receive_json(timeout=30)
            if "id" not in message:
                self.events.append(message)
            if message.get("id") != call_id:
                continue
            if "error" in message:
                raise RuntimeError(f"{method}: {message['error']}")
            return dict(message.get("result", {}))

    async def evaluate(self, expression: str) -> Any:
        """The expression's value in the page (promises awaited)."""
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_until_loaded()

    async def wait_until_loaded(self) -> None:
        async def loaded() -> bool:
            with contextlib.suppress(RuntimeError):
                return bool(await self.evaluate("document.readyState === 'complete'"))
            return False

        await wait_for(loaded, within=30, what="the page to load")

    async def path(self) -> str:
        return str(await self.evaluate("location.pathname"))

    async def text(self, selector: str) -> str:
        found = f"document.querySelector({json.dumps(selector)}).textContent"
        return str(await self.evaluate(found))

    async def wait_for_text(self, selector: str, expected: str, *, within: float = 30) -> None:
        async def shown() -> bool:
            with contextlib.suppress(RuntimeError):
                return await self.text(selector) == expected
            return False

        await wait_for(shown, within=within, what=f"{selector} to read {expected!r}")

    async def wait_for_element(self, selector: str, *, within: float = 30) -> None:
        """Return once the page has loaded and holds an element matching `selector`."""
        found = (
            "document.readyState === 'complete'"
            f" && !!document.querySelector({json.dumps(selector)})"
        )

        async def present() -> bool:
            with contextlib.suppress(RuntimeError):
                return bool(await self.evaluate(found))
            return False

        await wait_for(present, within=within, what=f"{selector} on the page")

    async def click(self, selector: str) -> None:
        """A real mouse click at the middle of the element."""
        await self.wait_for_element(selector)
        box = await self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1
            )

    async def type(self, selector: str, text: str) -> None:
        """Focus the field and type into it, as a keyboard would (input events fire)."""
        await self.wait_for_element(selector)
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        await self.send("Input.insertText", text=text)

    async def choose(self, selector: str, value: str) -> None:
        """Pick an option of a select, firing its change event."""
        await self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            f" e.value = {json.dumps(value)};"
            " e.dispatchEvent(new Event('change', {bubbles: true})); })()"
        )

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", format="png")
        await asyncio.to_thread(_write, path, base64.b64decode(shot["data"]))


@contextlib.asynccontextmanager
async def chromium_page() -> AsyncIterator[Page]:
    """A fresh headless Chromium with one blank tab; killed, profile removed, afterwards."""
    if shutil.which(CHROMIUM) is None:
        raise AssertionError(f"{CHROMIUM} is missing: `make browser-tools` installs it")
    profile = Path(tempfile.mkdtemp(prefix="console-chromium-"))
    process = await asyncio.create_subprocess_exec(
        CHROMIUM,
        *_FLAGS,
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        port = await _devtools_port(profile, process)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json()
            page_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            async with http.ws_connect(page_url, max_msg_size=64 * 1024 * 1024) as socket:
                page = Page(socket)
                await page.send("Page.enable")
                yield page
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        await asyncio.to_thread(shutil.rmtree, profile, ignore_errors=True)


async def _devtools_port(profile: Path, process: asyncio.subprocess.Process) -> int:
    """The port Chromium chose, once it wrote it to the profile's DevToolsActivePort."""
    active = profile / "DevToolsActivePort"

    async def listening() -> bool:
        if process.returncode is not None:
            raise AssertionError(f"chromium exited with {process.returncode}")
        return bool(await asyncio.to_thread(_read, active))

    await wait_for(listening, within=30, what="chromium's DevTools port")
    return int((await asyncio.to_thread(_read, active)).split()[0])


def _read(path: Path) -> str:
    return path.read_text().strip() if path.exists() else ""


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)

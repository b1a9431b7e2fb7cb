"""Drives a console process as a browser would, over plain HTTP: cookies kept by hand (the
console marks them Secure, which httpx's jar would not send to http://127.0.0.1)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from libs.devstack.services import REPO_ROOT

_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@dataclass(frozen=True)
class Person:
    email: str
    password: str
    role: str


class ConsoleBrowser:
    """One browser's view of the console: its cookies and the CSRF token of its session."""

    def __init__(self, url: str) -> None:
        self.http = httpx.AsyncClient(base_url=url, timeout=30.0, follow_redirects=False)
        self.cookies: dict[str, str] = {}
        self.csrf = ""

    async def get(self, path: str) -> httpx.Response:
        return self._kept(await self.http.get(path, headers=self._cookie_header()))

    async def post_form(
        self, path: str, fields: dict[str, str], *, csrf: str | None = None
    ) -> httpx.Response:
        """A form post carrying the session's CSRF token, or `csrf` instead ('' for none)."""
        token = self.csrf if csrf is None else csrf
        body = {**fields, "csrf_token": token} if token else fields
        response = await self.http.post(path, data=body, headers=self._cookie_header())
        return self._kept(response)

    async def post_json(self, path: str, body: Any, *, csrf: str | None = None) -> httpx.Response:
        token = self.csrf if csrf is None else csrf
        headers = {**self._cookie_header(), **({"X-CSRF-Token": token} if token else {})}
        return self._kept(await self.http.post(path, json=body, headers=headers))

    async def sign_in(self, person: Person) -> httpx.Response:
        """Sign in through the form; on success, learn the session's CSRF token."""
        form = await self.get("/sign-in")
        token = _CSRF_FIELD.search(form.text)
        assert token is not None, form.text
        fields = {"email": person.email, "password": person.password, "next": "/segments"}
        response = await self.post_form("/sign-in", fields, csrf=token.group(1))
        if response.status_code == 303:
            page = await self.get("/audit")  # a page that needs no managed service
            meta = _CSRF_META.search(page.text)
            assert meta is not None, page.text
            self.csrf = meta.group(1)
        return response

    def _cookie_header(self) -> dict[str, str]:
        if not self.cookies:
            return {}
        return {"Cookie": "; ".join(f"{name}={value}" for name, value in self.cookies.items())}

    def _kept(self, response: httpx.Response) -> httpx.Response:
        for header in response.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            value = rest.split(";", 1)[0].strip('"')
            if "max-age=0" in header.lower() or not value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return response

    async def aclose(self) -> None:
        await self.http.aclose()


class StaffedConsole(Protocol):
    """A running console and the marketer and analyst an admin added to it: what the console
    conftest's `marketer` and `analyst` fixtures sign in to (a module may bring its own)."""

    @property
    def marketer(self) -> Person: ...

    @property
    def analyst(self) -> Person: ...

    def browser(self) -> ConsoleBrowser: ...


async def staff(command_env: dict[str, str], url: str, run: str) -> tuple[Person, Person, Person]:
    """An admin made on the command line (`command_env` names the console's schema), who adds a
    marketer and an analyst on the People page: the three of them."""
    admin = Person(f"admin-{run}@example.com", "correct horse battery", "admin")
    code, output = await console_command(
        command_env, "create-admin", "--email", admin.email, password=admin.password
    )
    assert code == 0, output
    marketer = Person(f"marketer-{run}@example.com", "marketer password 1", "marketer")
    analyst = Person(f"analyst-{run}@example.com", "analyst password 1", "analyst")
    browser = ConsoleBrowser(url)
    try:
        assert (await browser.sign_in(admin)).status_code == 303
        for person in (marketer, analyst):
            fields = {"email": person.email, "role": person.role, "password": person.password}
            added = await browser.post_form("/users", fields)
            assert added.status_code == 303, added.text
    finally:
        await browser.aclose()
    return admin, marketer, analyst


async def console_command(env: dict[str, str], *arguments: str, password: str) -> tuple[int, str]:
    """`python -m services.console <arguments>` with the password on standard input: its exit
    code and what it printed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.console",
        *arguments,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=REPO_ROOT,
        env={**os.environ, **env},
    )
    output, _ = await process.communicate(f"{password}\n".encode())
    assert process.returncode is not None
    return process.returncode, output.decode()

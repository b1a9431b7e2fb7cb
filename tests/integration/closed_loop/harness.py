"""The seven services of the loop as one thing a test talks to, and the fake outside world."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from typing import Any

import httpx

from libs.devstack.services import ServiceProcess
from tests.integration.dispatch.providers import Providers
from tests.integration.support import wait_for


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class ClosedLoop:
    """REST clients of every service, the write key, and the providers that receive sends."""

    clients: dict[str, httpx.AsyncClient]
    processes: dict[str, ServiceProcess]
    providers: Providers
    providers_url: str
    smtp_port: int
    write_key: str
    bootstrap: str

    def __getattr__(self, service: str) -> httpx.AsyncClient:
        try:
            return self.clients[service]
        except KeyError:
            raise AttributeError(service) from None

    async def call(self, service: str, method: str, path: str, **kwargs: Any) -> Any:
        """A management call that must succeed; its JSON answer (None for 204)."""
        response = await self.clients[service].request(method, path, **kwargs)
        assert response.status_code < 300, f"{method} {service}{path}: {response.text}"
        return response.json() if response.content else None

    async def track(self, call: str, **body: Any) -> None:
        """A Segment-spec call to ingest with the source's write key."""
        response = await self.clients["ingest"].post(
            f"/v1/{call}", json=body, auth=httpx.BasicAuth(self.write_key, "")
        )
        assert response.status_code == 200, response.text

    async def webhook_channel(self, name: str) -> None:
        url = f"{self.providers_url}/hook/{name}"
        await self.call(
            "dispatch",
            "POST",
            "/channels",
            json={"name": name, "kind": "webhook", "config": {"url": url, "secret": "s3cret"}},
        )

    async def email_channel(self, name: str) -> None:
        config = {
            "host": "127.0.0.1",
            "port": self.smtp_port,
            "tls": "none",
            "from_address": "hello@closeloop.test",
        }
        await self.call(
            "dispatch", "POST", "/channels", json={"name": name, "kind": "email", "config": config}
        )

    async def mail_to(self, address: str, *, within: float = 60) -> Message:
        found: list[Message] = []

        async def arrived() -> bool:
            found[:] = [m for m in self.providers.mail if address in str(m["To"])]
            return bool(found)

        await wait_for(arrived, within=within, what=f"an email to {address}", every=0.05)
        return found[0]

    async def profile_of(self, identifier: str) -> dict[str, Any] | None:
        answer = await self.call("profile", "GET", "/profiles", params={"identifier": identifier})
        profiles: list[dict[str, Any]] = answer["profiles"]
        return profiles[0] if profiles else None


def elapsed_ms(started: float) -> float:
    return (time.monotonic() - started) * 1000

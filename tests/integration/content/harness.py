"""Drives a content service process over the test stack: its API, its input and its output."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import httpx

from libs.common import topics
from libs.common.bus import dlq
from libs.common.bus.reader import header
from libs.common.events import (
    Event,
    MessageClicked,
    MessageRendered,
    MessageSent,
)
from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack
from tests import events
from tests.integration.support import publish, read_events, read_topic

SOURCE = "closeloop/tests/content"


def outcome(
    kind: type[MessageSent] | type[MessageClicked],
    template_id: str,
    variant_id: str,
    message_id: str,
    *,
    request_id: str | None = None,
    profile_id: str | None = None,
    **extra: Any,
) -> Event[Any]:
    """An outcome as dispatch reports it; of a message content rendered when `request_id` and
    `profile_id` are its request's, else of one content never saw."""
    return events.outcome(
        kind,
        profile_id or f"prf_{uuid.uuid4().hex[:8]}",
        message_id=message_id,
        request_id=request_id,
        template_id=template_id,
        template_version=1,
        variant_id=variant_id,
        source=SOURCE,
        **extra,
    )


def email_template(template_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "id": template_id,
        "name": template_id,
        "channel": "email",
        "defaults": {"coupon_code": "WELCOME"},
        "variants": [
            {
                "id": "a",
                "subject": "Hi {{ profile.traits.first_name }}, your tea is waiting",
                "html": '<p>Use {{ coupon_code }}</p><a href="https://shop.example.com/p/1">Shop</a>',
            }
        ],
        **overrides,
    }


class ContentHarness:
    """One running content service: its HTTP API as the admin, and what it published."""

    def __init__(self, stack: Stack, process: ServiceProcess) -> None:
        self.stack = stack
        self.process = process
        self.http = httpx.AsyncClient(
            base_url=process.url,
            headers={"Authorization": f"Bearer {stack.admin_token}"},
            timeout=30.0,
        )

    async def publish(self, *events: Event[Any]) -> None:
        await publish(self.stack.kafka_bootstrap, events)

    async def create(self, body: dict[str, Any]) -> httpx.Response:
        return await self.http.post("/templates", json=body)

    async def rendered(self, request_id: str) -> list[MessageRendered]:
        """The `message.rendered` events answering a request."""
        found = []
        for _, event in await read_events(self.stack.kafka_bootstrap, topics.DELIVERIES):
            if isinstance(event.data, MessageRendered) and event.data.request_id == request_id:
                found.append(event.data)
        return found

    async def rendered_for(self, request_ids: Collection[str]) -> dict[str, MessageRendered]:
        """The `message.rendered` answering each of these requests that has one, by request."""
        wanted = set(request_ids)
        return {
            event.data.request_id: event.data
            for _, event in await read_events(self.stack.kafka_bootstrap, topics.DELIVERIES)
            if isinstance(event.data, MessageRendered) and event.data.request_id in wanted
        }

    async def decisions(self, request_ids: Collection[str]) -> dict[str, asyncpg.Record]:
        """The service's `decisions` rows of these requests, by request (read from its schema:
        the API does not list decisions one by one)."""
        dsn = self.stack.database_url.replace("postgresql+asyncpg://", "postgresql://")
        connection = await asyncpg.connect(dsn)
        try:
            rows = await connection.fetch(
                "SELECT request_id, profile_id, variant_id, outcome, context_key, propensity "
                f"FROM {self.process.name}.decisions WHERE request_id = ANY($1::text[])",
                list(request_ids),
            )
        finally:
            await connection.close()
        return {row["request_id"]: row for row in rows}

    async def consumed(self, event_type: str) -> float:
        """How many events of the type the service's consumer has handled, from its metrics."""
        response = await self.http.get("/metrics")
        response.raise_for_status()
        label = f'type="{event_type}"'
        return sum(
            float(line.rpartition(" ")[2])
            for line in response.text.splitlines()
            if line.startswith("closeloop_events_consumed_total{") and label in line
        )

    async def dead_letters(self, event_id: str) -> list[dict[str, str]]:
        """What this service's consumer group sent to the DLQ for an event."""
        group = f"closeloop-{self.process.name}"
        return [
            {name: header(record, name) for name in (dlq.ERROR_TYPE, dlq.ERROR, dlq.GROUP)}
            for record in await read_topic(self.stack.kafka_bootstrap, topics.DLQ)
            if header(record, "ce_id") == event_id and header(record, dlq.GROUP) == group
        ]

    async def aclose(self) -> None:
        await self.http.aclose()


class FakeChatCompletions:
    """A local server answering `POST /v1/chat/completions` the way OpenAI's API does."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []

    @contextmanager
    def serving(self) -> Iterator[str]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                fake.requests.append(json.loads(self.rfile.read(length)))
                fake.authorizations.append(self.headers.get("Authorization"))
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                body = json.dumps(
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "model": fake.requests[-1].get("model"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {
                                    "role": "assistant",
                                    "content": json.dumps(fake.answer),
                                },
                                "finish_reason": "stop",
                            }
                        ],
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()

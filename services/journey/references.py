"""Whether the templates, segments and subscription topics a journey names exist: asked of
content, segment and dispatch.

Management path only (create, change, publish); the hot path never calls another service.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable
from urllib.parse import quote

import httpx

from services.journey.conditions import InvalidDefinition
from services.journey.graph import Journey


class ReferenceUnavailable(Exception):
    """The service that knows whether a reference exists did not answer usefully."""

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"the {service} service is unavailable: {reason}")
        self.service = service


@runtime_checkable
class References(Protocol):
    async def template_exists(self, template_id: str) -> bool:
        """True if content has the template; raises ReferenceUnavailable when it cannot say."""

    async def segment_exists(self, segment_id: str) -> bool:
        """True if segment has the segment; raises ReferenceUnavailable when it cannot say."""

    async def topic_exists(self, topic_id: str) -> bool:
        """True if dispatch has the topic; raises ReferenceUnavailable when it cannot say."""


async def check_references(journey: Journey, references: References) -> None:
    """Raise InvalidDefinition naming the first node (or the entry) whose reference is unknown."""
    segment = journey.entry.segment
    if segment is not None and not await references.segment_exists(segment):
        raise InvalidDefinition("entry.segment", f"there is no segment {segment!r}")
    options = [(node.id, option) for node in journey.sends() for option in node.options]
    templates = sorted({option.template_id for _, option in options})
    found = await asyncio.gather(*(references.template_exists(t) for t in templates))
    known = dict(zip(templates, found, strict=True))
    for node_id, option in options:
        if not known[option.template_id]:
            raise InvalidDefinition(
                f"nodes.{node_id}.{option.template_field}",
                f"there is no template {option.template_id!r}",
            )
    await _check_topics(journey, references)


async def _check_topics(journey: Journey, references: References) -> None:
    """Only a journey that names topics asks dispatch."""
    sends = [(node.id, node.topic) for node in journey.sends() if node.topic is not None]
    topics = sorted({topic for _, topic in sends})
    found = await asyncio.gather(*(references.topic_exists(t) for t in topics))
    known = dict(zip(topics, found, strict=True))
    for node_id, topic in sends:
        if not known[topic]:
            raise InvalidDefinition(f"nodes.{node_id}.topic", f"there is no topic {topic!r}")


class HttpReferences:
    """Asks `GET {content}/templates/{id}`, `GET {segment}/segments/{id}` and
    `GET {dispatch}/topics/{id}`: 200 or 404.

    An empty base URL skips that check (every reference of that kind counts as existing).
    """

    def __init__(
        self,
        *,
        content_url: str,
        segment_url: str,
        dispatch_url: str,
        admin_token: str,
        timeout_seconds: float,
    ) -> None:
        self._content_url = content_url.rstrip("/")
        self._segment_url = segment_url.rstrip("/")
        self._dispatch_url = dispatch_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {admin_token}"}
        self._timeout = timeout_seconds

    async def template_exists(self, template_id: str) -> bool:
        return await self._exists("content", self._content_url, "templates", template_id)

    async def segment_exists(self, segment_id: str) -> bool:
        return await self._exists("segment", self._segment_url, "segments", segment_id)

    async def topic_exists(self, topic_id: str) -> bool:
        return await self._exists("dispatch", self._dispatch_url, "topics", topic_id)

    async def _exists(self, service: str, base_url: str, collection: str, item: str) -> bool:
        if not base_url:
            return True
        url = f"{base_url}/{collection}/{quote(item, safe='')}"
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.get(url, headers=self._headers)
        except httpx.HTTPError as error:
            raise ReferenceUnavailable(service, type(error).__name__) from None
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise ReferenceUnavailable(service, f"{url} answered {response.status_code}")

"""Whether a subscription topic a template names exists: asked of dispatch, which owns topics.

Management path only (a template created or changed); rendering never calls another service.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx


class TopicsUnavailable(Exception):
    """Dispatch did not answer whether the topic exists."""


class DispatchTopics:
    """Asks `GET {dispatch}/topics/{id}`: 200 or 404. An empty URL skips the check (every
    topic counts as existing)."""

    def __init__(self, dispatch_url: str, admin_token: str, timeout_seconds: float) -> None:
        self._dispatch_url = dispatch_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {admin_token}"}
        self._timeout = timeout_seconds

    async def exists(self, topic_id: str) -> bool:
        if not self._dispatch_url:
            return True
        url = f"{self._dispatch_url}/topics/{quote(topic_id, safe='')}"
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.get(url, headers=self._headers)
        except httpx.HTTPError as error:
            raise TopicsUnavailable(type(error).__name__) from None
        if response.status_code in (200, 404):
            return response.status_code == 200
        raise TopicsUnavailable(f"{url} answered {response.status_code}")

"""One managed service's API, called server-side with the admin token (never the browser's).

A call answers the service's JSON, or raises `UpstreamRefused` carrying the service's own error
(a 4xx the console shows on its form), `UpstreamMoved` (a 3xx left unfollowed) or
`UpstreamUnavailable` (unreachable, or a 5xx).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx


class UpstreamRefused(Exception):
    """The service refused the call (4xx): its code, message and field, shown to the user."""

    def __init__(self, status: int, code: str, message: str, field: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


class UpstreamMoved(Exception):
    """The service answered that the thing lives elsewhere now (3xx): `location` says where."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


class UpstreamUnavailable(Exception):
    """The service could not be reached or failed (5xx)."""

    def __init__(self, service: str, detail: str) -> None:
        super().__init__(f"{service}: {detail}")
        self.service = service


class ManagedService:
    """One service's management API, over one pooled HTTP client."""

    def __init__(self, name: str, base_url: str, admin_token: str, timeout: float) -> None:
        self.name = name
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=timeout,
            follow_redirects=True,  # a merged profile's id answers 308 to its survivor
        )

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON the service answers (None for 204)."""
        try:
            response = await self._request(method, path, body)
        except httpx.HTTPError as error:
            raise UpstreamUnavailable(self.name, type(error).__name__) from error
        if response.status_code >= 500:
            raise UpstreamUnavailable(self.name, f"answered {response.status_code}")
        if response.status_code >= 400:
            raise _refusal(response)
        if response.status_code >= 300:
            raise UpstreamMoved(response.headers.get("location", ""))
        return None if response.status_code == 204 else response.json()

    async def _request(self, method: str, path: str, body: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, json=body)
        except httpx.RemoteProtocolError:
            # A pooled connection the service closed as idle (its keep-alive ran out) just as
            # it was taken again: a read is asked once more, on a new connection.
            if method != "GET":
                raise
            return await self._http.request(method, path, json=body)

    async def aclose(self) -> None:
        await self._http.aclose()


def _refusal(response: httpx.Response) -> UpstreamRefused:
    try:
        error = response.json()["error"]
        return UpstreamRefused(
            response.status_code, str(error["code"]), str(error["message"]), error.get("field")
        )
    except (ValueError, KeyError, TypeError):
        return UpstreamRefused(
            response.status_code, "refused", f"answered {response.status_code}", None
        )


def path_segment(text: str) -> str:
    """One path segment: a `/` or `..` typed by someone cannot reach another route."""
    return quote(text, safe="")


def with_query(path: str, params: dict[str, Any]) -> str:
    """The path with the parameters that are set, as a query string."""
    query = httpx.QueryParams({k: v for k, v in params.items() if v is not None})
    return f"{path}?{query}" if query else path

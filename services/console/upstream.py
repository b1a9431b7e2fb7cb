"""The managed services' APIs, called server-side with the admin token (never the browser's).

One `ManagedService` per service base URL; a call answers the service's JSON, or raises
`UpstreamRefused` carrying the service's own error (a 4xx the console shows on its form) or
`UpstreamUnavailable` (unreachable, or a 5xx).
"""

from __future__ import annotations

from typing import Any

import httpx

from services.console.settings import ConsoleSettings


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
            response = await self._http.request(method, path, json=body)
        except httpx.HTTPError as error:
            raise UpstreamUnavailable(self.name, type(error).__name__) from error
        if response.status_code >= 500:
            raise UpstreamUnavailable(self.name, f"answered {response.status_code}")
        if response.status_code >= 400:
            raise _refusal(response)
        if response.status_code >= 300:
            raise UpstreamMoved(response.headers.get("location", ""))
        return None if response.status_code == 204 else response.json()

    async def aclose(self) -> None:
        await self._http.aclose()


class SegmentApi:
    """The segment service's definitions and previews."""

    def __init__(self, service: ManagedService) -> None:
        self._service = service

    async def list(self) -> list[dict[str, Any]]:
        answer = await self._service.call("GET", "/segments")
        return list(answer["segments"])

    async def get(self, segment_id: str) -> dict[str, Any]:
        return dict(await self._service.call("GET", f"/segments/{segment_id}"))

    async def create(self, name: str, description: str, conditions: Any) -> dict[str, Any]:
        body = {"name": name, "description": description, "conditions": conditions}
        return dict(await self._service.call("POST", "/segments", body))

    async def replace(
        self, segment_id: str, name: str, description: str, conditions: Any
    ) -> dict[str, Any]:
        body = {"name": name, "description": description, "conditions": conditions}
        return dict(await self._service.call("PUT", f"/segments/{segment_id}", body))

    async def delete(self, segment_id: str) -> None:
        await self._service.call("DELETE", f"/segments/{segment_id}")

    async def preview(self, conditions: Any, sample_size: int) -> dict[str, Any]:
        body = {"conditions": conditions, "sample_size": sample_size}
        return dict(await self._service.call("POST", "/segments/preview", body))


class JourneyApi:
    """The journey service's journeys: drafts, validation, publishing, pausing and stats."""

    def __init__(self, service: ManagedService) -> None:
        self._service = service

    async def list(self) -> list[dict[str, Any]]:
        answer = await self._service.call("GET", "/journeys")
        return list(answer["journeys"])

    async def get(self, journey_id: str) -> dict[str, Any]:
        return dict(await self._service.call("GET", f"/journeys/{journey_id}"))

    async def create(
        self, journey_id: str | None, name: str, description: str, graph: dict[str, Any]
    ) -> dict[str, Any]:
        body = {**graph, "id": journey_id, "name": name, "description": description}
        return dict(await self._service.call("POST", "/journeys", body))

    async def replace(
        self, journey_id: str, name: str, description: str, graph: dict[str, Any]
    ) -> dict[str, Any]:
        body = {**graph, "name": name, "description": description}
        return dict(await self._service.call("PUT", f"/journeys/{journey_id}", body))

    async def validate(self, graph: dict[str, Any]) -> dict[str, Any]:
        return dict(await self._service.call("POST", "/journeys/validate", graph))

    async def act(self, journey_id: str, action: str) -> dict[str, Any]:
        """`publish`, `pause` or `resume`."""
        return dict(await self._service.call("POST", f"/journeys/{journey_id}/{action}"))

    async def stats(self, journey_id: str) -> dict[str, Any]:
        return dict(await self._service.call("GET", f"/journeys/{journey_id}/stats"))


class Upstream:
    """Every managed service the console calls, kept on `app.state.upstream`; a worker only so
    that its connections are closed at shutdown."""

    name = "upstream"

    def __init__(self, settings: ConsoleSettings) -> None:
        token = settings.admin_token.get_secret_value()
        timeout = settings.console_upstream_timeout_seconds
        self._segment = ManagedService("segment", settings.console_segment_url, token, timeout)
        self.segments = SegmentApi(self._segment)
        self._journey = ManagedService("journey", settings.console_journey_url, token, timeout)
        self.journeys = JourneyApi(self._journey)
        self.content = ManagedService("content", settings.console_content_url, token, timeout)
        self.profile = ManagedService("profile", settings.console_profile_url, token, timeout)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        for service in (self._segment, self._journey, self.content, self.profile):
            await service.aclose()

    def is_alive(self) -> bool:
        return True


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

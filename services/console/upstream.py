"""Every managed service the console calls, server-side with the admin token (never the
browser's): one pooled client per service, each behind its typed API, and the console's answer
when a service refuses or fails.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

from fastapi import Depends

from libs.common.api import from_state
from libs.common.errors import ApiError
from services.console.managed_service import (
    ManagedService,
    UpstreamMoved,
    UpstreamRefused,
    UpstreamUnavailable,
    path_segment,
    with_query,
)
from services.console.settings import ConsoleSettings
from services.console.sources import AttributionApi, DispatchApi, ProfileApi
from services.console.template_upstream import TemplateApi


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
    """The journey service's journeys (drafts, validation, publishing, pausing and stats) and
    a person's runs through them."""

    def __init__(self, service: ManagedService) -> None:
        self._service = service

    # Above `list`, whose name shadows the builtin in the annotations that follow it.
    async def runs(self, profile_id: str, limit: int) -> list[dict[str, Any]]:
        path = with_query(f"/profiles/{path_segment(profile_id)}/runs", {"limit": limit})
        return list((await self._service.call("GET", path))["runs"])

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
        segment = ManagedService("segment", settings.console_segment_url, token, timeout)
        journey = ManagedService("journey", settings.console_journey_url, token, timeout)
        content = ManagedService("content", settings.console_content_url, token, timeout)
        profile = ManagedService("profile", settings.console_profile_url, token, timeout)
        dispatch = ManagedService("dispatch", settings.console_dispatch_url, token, timeout)
        attribution = ManagedService(
            "attribution", settings.console_attribution_url, token, timeout
        )
        self._services = (segment, journey, content, profile, dispatch, attribution)
        self.segments = SegmentApi(segment)
        self.journeys = JourneyApi(journey)
        self.templates = TemplateApi(content)
        self.profiles = ProfileApi(profile)
        self.dispatch = DispatchApi(dispatch)
        self.attribution = AttributionApi(attribution)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        for service in self._services:
            await service.aclose()

    def is_alive(self) -> bool:
        return True


_T = TypeVar("_T")
UpstreamDep = Annotated[Upstream, Depends(from_state("upstream", Upstream))]


async def answered(call: Awaitable[_T]) -> _T:
    """A managed service's answer; its refusal as the console's (same status, code, field);
    502 when it cannot be reached."""
    try:
        return await call
    except UpstreamRefused as refused:
        raise ApiError(refused.status, refused.code, refused.message, refused.field) from None
    except UpstreamUnavailable as unavailable:
        raise unavailable_error(unavailable) from None


async def part_of_page(call: Awaitable[_T], missing: _T, what: str, notes: list[str]) -> _T:
    """A part of a page that can be left out: the service's answer, or `missing` and a note
    saying that `what` could not be read."""
    try:
        return await call
    except (UpstreamRefused, UpstreamUnavailable, UpstreamMoved) as failed:
        notes.append(f"The {what} could not be read: {failed}.")
        return missing


def unavailable_error(unavailable: UpstreamUnavailable) -> ApiError:
    return ApiError(
        502, "upstream_unavailable", f"The {unavailable.service} service did not answer."
    )

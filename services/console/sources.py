"""What the profile and report pages read, server-side with the admin token: profiles and their
behaviour (profile), messages (dispatch), journey runs (journey), touches, credits, funnels,
revenue and insights (attribution). Read-only: nothing here changes a service."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

import httpx

from services.console.settings import ConsoleSettings
from services.console.upstream import ManagedService

# The credit models the attribution service computes, in the order the report shows them.
CREDIT_MODELS: Final = (
    "last_touch",
    "first_touch",
    "linear",
    "time_decay",
    "position_based",
    "markov",
)


class ProfileApi:
    """Profiles found by id, identifier or trait, and their behaviour."""

    def __init__(self, service: ManagedService) -> None:
        self._service = service

    async def get(self, profile_id: str) -> dict[str, Any]:
        """The profile; UpstreamMoved to its survivor's URL when it was merged."""
        return dict(await self._service.call("GET", f"/profiles/{quote(profile_id, safe='')}"))

    async def find(
        self, *, identifier: str | None = None, trait: str | None = None, after: str | None = None
    ) -> dict[str, Any]:
        """A page of profiles: those an identifier or a trait names, or all of them."""
        params = {"identifier": identifier, "trait": trait, "after": after, "limit": 50}
        return dict(await self._service.call("GET", _with("/profiles", params)))

    async def events(self, profile_id: str, limit: int) -> list[dict[str, Any]]:
        path = f"/profiles/{quote(profile_id, safe='')}/events"
        answer = await self._service.call("GET", _with(path, {"limit": limit}))
        return list(answer["events"])


class DispatchApi:
    def __init__(self, service: ManagedService) -> None:
        self._service = service

    async def messages(self, profile_id: str, limit: int) -> list[dict[str, Any]]:
        path = _with(f"/profiles/{quote(profile_id, safe='')}/messages", {"limit": limit})
        return list((await self._service.call("GET", path))["messages"])


class JourneyRunsApi:
    def __init__(self, service: ManagedService) -> None:
        self._service = service

    async def runs(self, profile_id: str, limit: int) -> list[dict[str, Any]]:
        path = _with(f"/profiles/{quote(profile_id, safe='')}/runs", {"limit": limit})
        return list((await self._service.call("GET", path))["runs"])


class AttributionApi:
    """A person's touches and credits; funnels, revenue per day, credit models, insights."""

    def __init__(self, service: ManagedService) -> None:
        self._service = service

    async def touches(self, profile_id: str, limit: int) -> dict[str, Any]:
        path = _with(f"/profiles/{quote(profile_id, safe='')}/touches", {"limit": limit})
        return dict(await self._service.call("GET", path))

    async def funnel(self, by: str, span: Span) -> dict[str, Any]:
        return dict(await self._service.call("GET", _with(f"/reports/{by}", span.params())))

    async def daily(self, span: Span) -> dict[str, Any]:
        return dict(await self._service.call("GET", _with("/reports/daily", span.params())))

    async def credit(self, model: str, span: Span) -> dict[str, Any]:
        params = {**span.params(), "model": model, "by": "channel"}
        return dict(await self._service.call("GET", _with("/reports/credit", params)))

    async def insights(self, span: Span) -> list[dict[str, Any]]:
        answer = await self._service.call("GET", _with("/insights", span.params()))
        return list(answer["insights"])


class Span:
    """The time range (and journey) a report is for."""

    def __init__(self, start: datetime, end: datetime, journey_id: str | None) -> None:
        self.start = start
        self.end = end
        self.journey_id = journey_id

    def params(self) -> dict[str, Any]:
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "journey_id": self.journey_id,
        }


class Sources:
    """Every service the profile and report pages read, on `app.state.sources`; a worker only
    so that its connections are closed at shutdown."""

    name = "sources"

    def __init__(self, settings: ConsoleSettings) -> None:
        token = settings.admin_token.get_secret_value()
        timeout = settings.console_upstream_timeout_seconds
        profile = ManagedService("profile", settings.console_profile_url, token, timeout)
        dispatch = ManagedService("dispatch", settings.console_dispatch_url, token, timeout)
        journey = ManagedService("journey", settings.console_journey_url, token, timeout)
        attribution = ManagedService(
            "attribution", settings.console_attribution_url, token, timeout
        )
        self._services: tuple[ManagedService, ...] = (profile, dispatch, journey, attribution)
        self.profiles = ProfileApi(profile)
        self.dispatch = DispatchApi(dispatch)
        self.journeys = JourneyRunsApi(journey)
        self.attribution = AttributionApi(attribution)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        for service in self._services:
            await service.aclose()

    def is_alive(self) -> bool:
        return True


def _with(path: str, params: dict[str, Any]) -> str:
    """The path with the parameters that are set, as a query string."""
    query = httpx.QueryParams({k: v for k, v in params.items() if v is not None})
    return f"{path}?{query}" if query else path

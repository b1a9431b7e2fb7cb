"""What the profile, report and template pages read, server-side with the admin token, over the
pooled clients of `Upstream`: profiles and their behaviour (profile), messages (dispatch),
touches, credits, funnels, revenue and insights (attribution). Read-only: nothing here changes
a service."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from services.console.managed_service import ManagedService, path_segment, with_query

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
        """The profile (a merged one's survivor); UpstreamRefused 404 when there is none."""
        return dict(await self._service.call("GET", f"/profiles/{path_segment(profile_id)}"))

    async def find(
        self, *, identifier: str | None = None, trait: str | None = None, after: str | None = None
    ) -> dict[str, Any]:
        """A page of profiles: those an identifier or a trait names, or all of them."""
        params = {"identifier": identifier, "trait": trait, "after": after, "limit": 50}
        return dict(await self._service.call("GET", with_query("/profiles", params)))

    async def by_identifier(self, identifier: str) -> dict[str, Any] | None:
        """The profile an identifier (`email:a@b.c`, `user_id:u1`) belongs to, if any."""
        profiles = (await self.find(identifier=identifier))["profiles"]
        return dict(profiles[0]) if profiles else None

    async def events(self, profile_id: str, limit: int) -> list[dict[str, Any]]:
        path = with_query(f"/profiles/{path_segment(profile_id)}/events", {"limit": limit})
        return list((await self._service.call("GET", path))["events"])


class DispatchApi:
    def __init__(self, service: ManagedService) -> None:
        self._service = service

    async def messages(self, profile_id: str, limit: int) -> list[dict[str, Any]]:
        path = with_query(f"/profiles/{path_segment(profile_id)}/messages", {"limit": limit})
        return list((await self._service.call("GET", path))["messages"])


class AttributionApi:
    """A person's touches and credits; funnels, revenue per day, credit models, insights."""

    def __init__(self, service: ManagedService) -> None:
        self._service = service

    async def touches(self, profile_id: str, limit: int) -> dict[str, Any]:
        path = with_query(f"/profiles/{path_segment(profile_id)}/touches", {"limit": limit})
        return dict(await self._service.call("GET", path))

    async def funnel(self, by: str, span: Span) -> dict[str, Any]:
        return dict(await self._service.call("GET", with_query(f"/reports/{by}", span.params())))

    async def daily(self, span: Span) -> dict[str, Any]:
        return dict(await self._service.call("GET", with_query("/reports/daily", span.params())))

    async def credit(self, model: str, span: Span) -> dict[str, Any]:
        params = {**span.params(), "model": model, "by": "channel"}
        return dict(await self._service.call("GET", with_query("/reports/credit", params)))

    async def insights(self, span: Span) -> list[dict[str, Any]]:
        answer = await self._service.call("GET", with_query("/insights", span.params()))
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

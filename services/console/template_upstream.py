"""The content service's templates, previews, variant experiments and copy suggestions: called
server-side with the admin token, over the content service's pooled client in `Upstream`."""

from __future__ import annotations

from typing import Any

from services.console.managed_service import ManagedService, path_segment


class TemplateApi:
    """The content service's templates (every save a new version) and what it knows of them."""

    def __init__(self, service: ManagedService) -> None:
        self._service = service

    async def list(self) -> list[dict[str, Any]]:
        answer = await self._service.call("GET", "/templates")
        return list(answer["templates"])

    async def get(self, template_id: str) -> dict[str, Any]:
        return dict(await self._service.call("GET", f"/templates/{path_segment(template_id)}"))

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(await self._service.call("POST", "/templates", body))

    async def replace(self, template_id: str, body: dict[str, Any]) -> dict[str, Any]:
        path = f"/templates/{path_segment(template_id)}"
        return dict(await self._service.call("PUT", path, body))

    async def delete(self, template_id: str) -> None:
        await self._service.call("DELETE", f"/templates/{path_segment(template_id)}")

    async def variants(self, template_id: str) -> dict[str, Any]:
        """The bandit's view: each variant's sends, clicks, conversions and split."""
        path = f"/templates/{path_segment(template_id)}/variants"
        return dict(await self._service.call("GET", path))

    async def preview(
        self,
        template_id: str,
        profile: dict[str, Any],
        variant_id: str | None,
        variables: dict[str, Any],
    ) -> dict[str, Any]:
        """The variant rendered strictly for the profile's facts (as a request carries them)."""
        body = {"profile": profile, "variant_id": variant_id, "variables": variables}
        path = f"/templates/{path_segment(template_id)}/preview"
        return dict(await self._service.call("POST", path, body))

    async def suggestions(self, channel: str, brief: str, count: int) -> dict[str, Any]:
        body = {"channel": channel, "brief": brief, "count": count}
        return dict(await self._service.call("POST", "/copy/suggestions", body))

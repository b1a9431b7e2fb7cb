"""Answering a request: the holdout, the variant, the recipient, the render, the tracked message."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from libs.common.bus import UnprocessableEvent
from libs.common.events import MessageRendered, MessageRequested
from services.content import metrics
from services.content.bandit import choose_variant, held_out
from services.content.messages import (
    Tracking,
    UnsendableContent,
    content_of,
    template_variables,
    with_defaults,
)
from services.content.profiles import ProfileFacts, needs_recipient, recipient_for
from services.content.sandbox import RenderError, RenderJob, RenderSandbox
from services.content.store import ContentStore
from services.content.templates import TemplateVersion, assemble, liquid_sources


# Both go to the DLQ at once: retrying cannot help, and a run of them is no outage.
class UnknownTemplate(UnprocessableEvent):
    """The request names a template content does not have."""


class RequestNotRendered(UnprocessableEvent):
    """The template exists but this request cannot be rendered into a message."""


@dataclass(frozen=True)
class RequestRenderer:
    """Renders requests in the sandbox, signing links for dispatch's tracking endpoints."""

    sandbox: RenderSandbox
    tracking_base_url: str
    tracking_secret: str

    async def answer(
        self, store: ContentStore, request: MessageRequested
    ) -> MessageRendered | None:
        """The message for a request, or None when content decides to send nothing.

        Nothing for a request decided before (same idempotency key), a holdout, or a profile
        without an address for the channel; the last two are recorded in `decisions`.
        """
        if await store.decided(request.idempotency_key):
            return None
        row = await store.get_template(request.template_id)
        if row is None:
            raise UnknownTemplate(
                f"There is no template {request.template_id!r} (request {request.request_id})."
            )
        template = row.current()
        if template.channel != request.channel:
            raise RequestNotRendered(
                f"Template {template.template_id!r} is for {template.channel}, "
                f"the request for {request.channel}."
            )
        # Seeded by the key: a redelivered request makes the same choices.
        rng = random.Random(request.idempotency_key)
        if held_out(template.holdout_share, rng):
            await self._decide(store, request, template, None, "holdout")
            metrics.HOLDOUTS.labels(template.template_id).inc()
            return None
        profile = await store.profile(request.profile_id) or ProfileFacts(request.profile_id)
        recipient = recipient_for(request.channel, profile)
        if recipient is None and needs_recipient(request.channel):
            await self._decide(store, request, template, None, "undeliverable")
            return None
        ids = [variant["id"] for variant in template.variants]
        stats = await store.variant_stats(template.template_id, ids, template.reward)
        variant_id = choose_variant(stats, rng).variant_id
        message = await self._render(request, template, variant_id, profile, recipient)
        await self._decide(store, request, template, variant_id, "rendered")
        metrics.VARIANT_PICKS.labels(template.template_id, variant_id).inc()
        return message

    async def _render(
        self,
        request: MessageRequested,
        template: TemplateVersion,
        variant_id: str,
        profile: ProfileFacts,
        recipient: str | None,
    ) -> MessageRendered:
        variant = template.variant(variant_id)
        assert variant is not None
        tracking = Tracking(self.tracking_base_url, self.tracking_secret, request.idempotency_key)
        variables = template_variables(
            request.variables,
            profile=profile.as_variable(),
            journey=request.journey.model_dump(),
            unsubscribe_url=tracking.unsubscribe(),
        )
        filled, defaulted = with_defaults(variables, template.defaults)
        started = time.perf_counter()
        try:
            rendered = await self.sandbox.render(
                RenderJob(liquid_sources(variant), filled, strict=False, html_fields=_html(request))
            )
            content = content_of(request.channel, assemble(variant, rendered.fields), tracking)
        except (RenderError, UnsendableContent) as error:
            metrics.RENDERS.labels(request.channel, "failed").inc()
            raise RequestNotRendered(
                f"Template {template.template_id!r} v{template.version} variant {variant_id!r} "
                f"did not render: {error}"
            ) from error
        metrics.RENDER_DURATION.labels(request.channel).observe(time.perf_counter() - started)
        _count_fallbacks(template.template_id, defaulted, rendered.missing)
        return MessageRendered(
            request_id=request.request_id,
            profile_id=request.profile_id,
            channel=request.channel,
            template_id=template.template_id,
            template_version=template.version,
            variant_id=variant_id,
            subject=content.subject,
            body=content.body,
            payload=content.payload,
            recipient=recipient,
            idempotency_key=request.idempotency_key,
            journey=request.journey,
            behavior_at=request.behavior_at,
        )

    async def _decide(
        self,
        store: ContentStore,
        request: MessageRequested,
        template: TemplateVersion,
        variant_id: str | None,
        outcome: str,
    ) -> None:
        await store.record_decision(
            idempotency_key=request.idempotency_key,
            request_id=request.request_id,
            profile_id=request.profile_id,
            template=template,
            variant_id=variant_id,
            outcome=outcome,
        )
        metrics.RENDERS.labels(request.channel, outcome).inc()


def _html(request: MessageRequested) -> frozenset[str]:
    # Only an email's HTML escapes what variables bring in; other fields are plain text.
    return frozenset({"html"}) if request.channel == "email" else frozenset()


def _count_fallbacks(template_id: str, defaulted: list[str], missing: list[str]) -> None:
    if defaulted:
        metrics.MISSING_VARIABLES.labels(template_id, "default").inc(len(defaulted))
    if missing:
        metrics.MISSING_VARIABLES.labels(template_id, "empty").inc(len(missing))

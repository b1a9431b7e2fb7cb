"""Answering requests: the holdout, the variant, the recipient, the render, the tracked message."""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from libs.common.bus import UnprocessableEvent
from libs.common.events import MessageRendered, MessageRequested
from services.content import metrics
from services.content.bandit import Choice, Context, held_out
from services.content.experiments import (
    EvidenceRow,
    Experiment,
    PolicyCache,
    VariantPolicy,
    fitted_policy,
    send_context,
)
from services.content.messages import (
    Tracking,
    UnsendableContent,
    content_of,
    template_variables,
    with_defaults,
)
from services.content.profiles import ProfileFacts, needs_recipient, recipient_for
from services.content.sandbox import (
    Rendered,
    RenderError,
    RenderJob,
    RenderSandbox,
    RenderStarved,
)
from services.content.store import BatchStore, Connection, DecisionRow
from services.content.templates import TemplateVersion, assemble, liquid_sources
from services.content.waiting import PendingRequest, expired

_log = logging.getLogger(__name__)


# Both go to the DLQ at once: retrying cannot help, and a run of them is no outage.
class UnknownTemplate(UnprocessableEvent):
    """The request names a template content does not have."""


class RequestNotRendered(UnprocessableEvent):
    """The template exists but this request cannot be rendered into a message."""


@dataclass(frozen=True, slots=True)
class _Send:
    """A request content renders: from which template and variant, for whom, to where."""

    request: MessageRequested
    template: TemplateVersion
    variant: dict[str, Any]
    profile: ProfileFacts
    recipient: str | None
    waited: bool
    context: Context
    propensity: float


@dataclass
class _Tally:
    """The batch's metrics, counted once per label set rather than once per request."""

    renders: collections.Counter[tuple[str, str]]
    holdouts: collections.Counter[str]
    picks: collections.Counter[tuple[str, str]]
    fallbacks: collections.Counter[tuple[str, str]]

    @classmethod
    def empty(cls) -> _Tally:
        return cls(
            collections.Counter(),
            collections.Counter(),
            collections.Counter(),
            collections.Counter(),
        )

    def publish(self) -> None:
        for (channel, outcome), count in self.renders.items():
            metrics.RENDERS.labels(channel, outcome).inc(count)
        for template_id, count in self.holdouts.items():
            metrics.HOLDOUTS.labels(template_id).inc(count)
        for (template_id, variant_id), count in self.picks.items():
            metrics.VARIANT_PICKS.labels(template_id, variant_id).inc(count)
        for (template_id, fallback), count in self.fallbacks.items():
            metrics.MISSING_VARIABLES.labels(template_id, fallback).inc(count)


@dataclass(frozen=True)
class RequestRenderer:
    """Renders requests in the sandbox, signing links for dispatch's tracking endpoints, with
    variants chosen by each template's bandit policy (kept in `policies` for a while; evidence
    discounted with `half_life_days`)."""

    sandbox: RenderSandbox
    tracking_base_url: str
    tracking_secret: str
    policies: PolicyCache
    half_life_days: float

    async def answer_all(
        self,
        store: BatchStore,
        connection: Connection,
        fresh: Sequence[PendingRequest],
        waited: Sequence[PendingRequest] = (),
        *,
        now: datetime,
        wait_seconds: float,
    ) -> list[MessageRendered | None]:
        """The message for each request, `waited` then `fresh`, or None where content sends
        nothing (yet).

        `fresh` are the batch's requests; `waited` those that waited for an address its profile
        changes gave (`claim_waiting`), answered as if they had just arrived. Nothing for a
        request decided before (same idempotency key, in an earlier batch or earlier in this
        one), a holdout, or a profile without an address for the channel (for a webhook: a profile
        content has not heard of yet), which waits for one (`awaiting_address`) unless it has
        waited too long (`undeliverable`). What the requests need is read in one query per
        table, and their renders go to the sandbox together.
        """
        keys = {p.request.idempotency_key for p in fresh}
        decided = await store.decided(connection, keys) if keys else set()
        pending = [*waited, *(p for p in fresh if p.request.idempotency_key not in decided)]
        if not pending:
            return [None] * (len(waited) + len(fresh))
        template_ids = {p.request.template_id for p in pending}
        templates = await store.templates(connection, template_ids)
        profiles = await store.profiles(connection, {p.profile_id for p in pending})
        lacking = {
            p.profile_id
            for p in pending[len(waited) :]
            if not _reachable(p.request.channel, profiles.get(p.profile_id))
        }
        if lacking:
            # Before deciding that a request waits: an address (or a profile) committed
            # meanwhile is seen.
            await store.lock_addresses(connection, lacking)
            profiles.update(await store.profiles(connection, lacking))
        policies = await self._policies(store, connection, templates.values(), now)
        tally = _Tally.empty()
        decisions: list[DecisionRow] = []
        parked: list[PendingRequest] = []
        sends: dict[int, _Send] = {}
        items = [(item, True) for item in waited] + [(item, False) for item in fresh]
        for index, (item, has_waited) in enumerate(items):
            request = item.request
            if has_waited:
                if item.profile_id != request.profile_id:  # merged while it waited
                    request = request.model_copy(update={"profile_id": item.profile_id})
            elif request.idempotency_key in decided:
                continue
            decided.add(request.idempotency_key)
            if has_waited and expired(item.arrived_at, now, wait_seconds):
                decisions.append(_given_up(request, templates.get(request.template_id)))
                tally.renders[request.channel, "undeliverable"] += 1
                continue
            try:
                template = _template_for(request, templates)
            except UnprocessableEvent as error:
                if not has_waited:
                    raise
                # Failing the batch would dead-letter the profile change that woke it up.
                _log.warning("A waiting request cannot be answered: %s", error)
                decisions.append(_decision(request, None, None, "failed"))
                tally.renders[request.channel, "failed"] += 1
                continue
            # Seeded by the key: a redelivered (or long-waited) request makes the same choices.
            rng = random.Random(request.idempotency_key)
            if held_out(template.holdout_share, rng):
                decisions.append(_decision(request, template, None, "holdout"))
                tally.renders[request.channel, "holdout"] += 1
                tally.holdouts[template.template_id] += 1
                continue
            known = profiles.get(item.profile_id)
            profile = known or ProfileFacts(item.profile_id)
            recipient = recipient_for(request.channel, profile)
            if not _reachable(request.channel, known):
                decisions.append(_decision(request, template, None, "awaiting_address"))
                parked.append(item)
                if not has_waited:
                    tally.renders[request.channel, "awaiting_address"] += 1
                continue
            context = send_context(profile, request.channel, now)
            choice = _choice(template, policies.get(template.template_id), context, rng)
            variant = template.variant(choice.variant_id)
            assert variant is not None
            sends[index] = _Send(
                request,
                template,
                variant,
                profile,
                recipient,
                has_waited,
                context,
                choice.propensity,
            )
        rendered = await self._render(list(sends.values()), tally)
        answers: list[MessageRendered | None] = [None] * len(items)
        for index, result in zip(sends, rendered, strict=True):
            send = sends[index]
            if isinstance(result, RequestNotRendered):
                if not send.waited:
                    raise result
                _log.warning("A waiting request did not render: %s", result)
                decisions.append(_decision(send.request, send.template, None, "failed"))
                continue
            answers[index] = result
            variant_id = send.variant["id"]
            decisions.append(
                _decision(
                    send.request,
                    send.template,
                    variant_id,
                    "rendered",
                    context_key=send.context.key,
                    propensity=send.propensity,
                )
            )
            tally.renders[send.request.channel, "rendered"] += 1
            tally.picks[send.template.template_id, variant_id] += 1
        await store.record_decisions(connection, decisions)
        await store.park(connection, parked)
        tally.publish()
        return answers

    async def _policies(
        self,
        store: BatchStore,
        connection: Connection,
        templates: Iterable[TemplateVersion],
        now: datetime,
    ) -> dict[str, VariantPolicy]:
        """The policy of each template with variants: kept, or fitted on its evidence as of now."""
        policies: dict[str, VariantPolicy] = {}
        stale: list[TemplateVersion] = []
        for template in templates:
            if len(template.variants) < 2:
                continue
            kept = self.policies.get(template)
            if kept is None:
                stale.append(template)
            else:
                policies[template.template_id] = kept
        if not stale:
            return policies
        ids = [template.template_id for template in stale]
        evidence = await store.evidence(connection, ids)
        experiments = await store.experiments(connection, ids)
        # A fit takes milliseconds of numpy: off the event loop, which serves the API too.
        fitted = await asyncio.to_thread(
            _fitted_policies, stale, evidence, experiments, now, self.half_life_days
        )
        for template, policy in zip(stale, fitted, strict=True):
            self.policies.keep(template, policy)
            policies[template.template_id] = policy
        return policies

    async def _render(
        self, sends: Sequence[_Send], tally: _Tally
    ) -> list[MessageRendered | RequestNotRendered]:
        """Every send rendered in one trip to the sandbox: its message, or why it has none."""
        if not sends:
            return []
        trackings: list[Tracking] = []
        jobs: list[RenderJob] = []
        for send in sends:
            request, template = send.request, send.template
            tracking = Tracking(
                self.tracking_base_url, self.tracking_secret, request.idempotency_key
            )
            variables = template_variables(
                request.variables,
                profile=send.profile.as_variable(),
                journey=request.journey.model_dump(),
                unsubscribe_url=tracking.unsubscribe(),
            )
            filled, defaulted = with_defaults(variables, template.defaults)
            if defaulted:
                tally.fallbacks[template.template_id, "default"] += len(defaulted)
            trackings.append(tracking)
            jobs.append(
                RenderJob(liquid_sources(send.variant), filled, False, _html(request.channel))
            )
        started = time.perf_counter()
        outcomes = await self.sandbox.render_all(jobs)
        starved = next((o for o in outcomes if isinstance(o, RenderStarved)), None)
        if starved is not None:
            # Not the template's fault: the batch is retried (with backoff) like any outage.
            raise starved
        messages = [
            self._message(send, outcome, tracking, tally)
            for send, outcome, tracking in zip(sends, outcomes, trackings, strict=True)
        ]
        # The sandbox renders a batch's messages together: each is given an equal share.
        each = (time.perf_counter() - started) / len(sends)
        for send in sends:
            metrics.RENDER_DURATION.labels(send.request.channel).observe(each)
        return messages

    def _message(
        self, send: _Send, outcome: Rendered | RenderError, tracking: Tracking, tally: _Tally
    ) -> MessageRendered | RequestNotRendered:
        request, template, variant = send.request, send.template, send.variant
        try:
            if isinstance(outcome, RenderError):
                raise outcome
            content = content_of(request.channel, assemble(variant, outcome.fields), tracking)
        except (RenderError, UnsendableContent) as error:
            metrics.RENDERS.labels(request.channel, "failed").inc()
            failure = RequestNotRendered(
                f"Template {template.template_id!r} v{template.version} variant "
                f"{variant['id']!r} did not render: {error}"
            )
            failure.__cause__ = error
            return failure
        if outcome.missing:
            tally.fallbacks[template.template_id, "empty"] += len(outcome.missing)
        return MessageRendered(
            request_id=request.request_id,
            profile_id=request.profile_id,
            channel=request.channel,
            template_id=template.template_id,
            template_version=template.version,
            variant_id=variant["id"],
            subject=content.subject,
            body=content.body,
            payload=content.payload,
            recipient=send.recipient,
            idempotency_key=request.idempotency_key,
            journey=request.journey,
            behavior_at=request.behavior_at,
            time_zone=_time_zone(send.profile),
        )


def _time_zone(profile: ProfileFacts) -> str | None:
    """The profile's `timezone` trait, passed on for dispatch's quiet hours (which checks it)."""
    zone = profile.traits.get("timezone")
    return zone if isinstance(zone, str) and 0 < len(zone) <= 64 else None


def _reachable(channel: str, profile: ProfileFacts | None) -> bool:
    """Whether a request on the channel can be answered now: the profile has the channel's
    address, or the channel needs none and content has heard of the profile."""
    if needs_recipient(channel):
        return profile is not None and recipient_for(channel, profile) is not None
    return profile is not None


def _template_for(
    request: MessageRequested, templates: Mapping[str, TemplateVersion]
) -> TemplateVersion:
    template = templates.get(request.template_id)
    if template is None:
        raise UnknownTemplate(
            f"There is no template {request.template_id!r} (request {request.request_id})."
        )
    if template.channel != request.channel:
        raise RequestNotRendered(
            f"Template {template.template_id!r} is for {template.channel}, "
            f"the request for {request.channel}."
        )
    return template


def _fitted_policies(
    templates: Sequence[TemplateVersion],
    evidence: Mapping[str, Sequence[EvidenceRow]],
    experiments: Mapping[str, Experiment],
    now: datetime,
    half_life_days: float,
) -> list[VariantPolicy]:
    return [
        fitted_policy(
            template,
            evidence.get(template.template_id, ()),
            experiments.get(template.template_id),
            now,
            half_life_days,
        )
        for template in templates
    ]


def _choice(
    template: TemplateVersion, policy: VariantPolicy | None, context: Context, rng: random.Random
) -> Choice:
    """The request's variant from the template's policy (a lone variant is certain)."""
    if policy is None:
        only = template.variants[0]["id"]
        return Choice(only, 1.0, {only: 1.0})
    return policy.choose(context, rng)


def _decision(
    request: MessageRequested,
    template: TemplateVersion | None,
    variant_id: str | None,
    outcome: str,
    *,
    context_key: str | None = None,
    propensity: float | None = None,
) -> DecisionRow:
    return DecisionRow(
        request.idempotency_key,
        request.request_id,
        request.profile_id,
        request.template_id,
        template.version if template is not None else 0,
        variant_id,
        outcome,
        context_key,
        propensity,
    )


def _given_up(request: MessageRequested, template: TemplateVersion | None) -> DecisionRow:
    return _decision(request, template, None, "undeliverable")


def _html(channel: str) -> frozenset[str]:
    # Only an email's HTML escapes what variables bring in; other fields are plain text.
    return _HTML_FIELDS if channel == "email" else frozenset()


_HTML_FIELDS = frozenset({"html"})

"""Answering requests: the holdout, the variant, the recipient, the render, the tracked message.

Everything about the person comes from the facts the request carries (`profile`, as journey
knew them when it asked): the `profile` variable, the address, the bandit's context, and the
time zone and the consent its traits state (libs/common/consent.py) passed on to dispatch. A
request made before requests carried them has none, and is rendered with an empty profile: on a
channel that needs an address it is `undeliverable`.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from libs.common.bus import UnprocessableEvent
from libs.common.consent import consent_from_traits
from libs.common.events import ContactRule, MessageRendered, MessageRequested
from libs.common.profiles import ProfileFacts, facts_of
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
from services.content.profiles import profile_variable
from services.content.sandbox import (
    Rendered,
    RenderError,
    RenderJob,
    RenderSandbox,
    RenderStarved,
)
from services.content.store import BatchStore, Connection, DecisionRow
from services.content.templates import TemplateVersion, assemble, liquid_sources


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
        requests: Sequence[MessageRequested],
        *,
        now: datetime,
    ) -> list[MessageRendered | None]:
        """The message for each request, in order, or None where content sends nothing.

        Nothing for a request decided before (same idempotency key, in an earlier batch or
        earlier in this one), a holdout, or a request whose profile facts have no address for
        its channel (`undeliverable`, at once: the facts travel with the request, so no later
        event could bring one). What the requests need is read in one query per table, and
        their renders go to the sandbox together.
        """
        keys = {request.idempotency_key for request in requests}
        decided = await store.decided(connection, keys) if keys else set()
        pending = [request for request in requests if request.idempotency_key not in decided]
        if not pending:
            return [None] * len(requests)
        templates = await store.templates(connection, {r.template_id for r in pending})
        policies = await self._policies(store, connection, templates.values(), now)
        tally = _Tally.empty()
        decisions: list[DecisionRow] = []
        sends: dict[int, _Send] = {}
        for index, request in enumerate(requests):
            if request.idempotency_key in decided:
                continue
            decided.add(request.idempotency_key)
            template = _template_for(request, templates)
            # Seeded by the key: a redelivered request makes the same choices.
            rng = random.Random(request.idempotency_key)
            if held_out(template.holdout_share, rng):
                decisions.append(_decision(request, template, None, "holdout"))
                tally.renders[request.channel, "holdout"] += 1
                tally.holdouts[template.template_id] += 1
                continue
            profile = facts_of(request.profile_id, request.profile)
            if not profile.can_reach(request.channel):
                decisions.append(_decision(request, template, None, "undeliverable"))
                tally.renders[request.channel, "undeliverable"] += 1
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
                profile.recipient(request.channel),
                context,
                choice.propensity,
            )
        rendered = await self._render(list(sends.values()), tally)
        answers: list[MessageRendered | None] = [None] * len(requests)
        for index, result in zip(sends, rendered, strict=True):
            if isinstance(result, RequestNotRendered):
                raise result
            send = sends[index]
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
                profile=profile_variable(send.profile),
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
            # The send's topic, else the template's.
            subscription_topic=request.subscription_topic or template.topic,
            consent=consent_from_traits(send.profile.traits),
            contact=_TRANSACTIONAL if template.transactional else request.contact,
        )


_TRANSACTIONAL = ContactRule(transactional=True)


def _time_zone(profile: ProfileFacts) -> str | None:
    """The profile's `timezone` trait, passed on for dispatch's quiet hours (which checks it)."""
    zone = profile.timezone
    return zone if zone is not None and len(zone) <= 64 else None


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
    template: TemplateVersion,
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
        template.version,
        variant_id,
        outcome,
        context_key,
        propensity,
    )


def _html(channel: str) -> frozenset[str]:
    # Only an email's HTML escapes what variables bring in; other fields are plain text.
    return _HTML_FIELDS if channel == "email" else frozenset()


_HTML_FIELDS = frozenset({"html"})

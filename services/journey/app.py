"""The journey service's app: the consumer of segment moves, behaviours, outcomes and profile
changes, the durable timers, the entry of current members, the upkeep of engagement evidence,
the outbox relay, and the journeys and broadcasts APIs."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common import topics
from libs.common.app import create_app
from libs.common.bus import EventConsumer
from libs.common.service import bus_parts
from libs.common.settings import Settings
from services.journey import api, broadcast_api
from services.journey.dry_run_sources import HttpDryRunSources
from services.journey.enrolments import MemberEnrolments
from services.journey.handlers import ACCEPTED_TYPES, journey_handler
from services.journey.learning import Policy
from services.journey.references import HttpReferences
from services.journey.settings import JourneySettings
from services.journey.store import finished_runs_retained
from services.journey.timers import JourneyTimers
from services.journey.upkeep import EvidenceUpkeep


def create(settings: Settings) -> FastAPI:
    assert isinstance(settings, JourneySettings)
    parts = bus_parts(settings)
    parts.retention.keep(
        finished_runs_retained(settings.schema_name, settings.journey_run_retention_days)
    )
    policy = Policy(settings.journey_explore_share)
    consumer = EventConsumer(
        settings,
        topics=[topics.SEGMENT, topics.BEHAVIOR, topics.OUTCOMES, topics.PROFILE],
        handler=journey_handler(
            settings.schema_name, step_limit=settings.journey_step_limit, policy=policy
        ),
        engine=parts.engine,
        producer=parts.producer,
        relay=parts.relay,
        accept_types=ACCEPTED_TYPES,
    )
    timers = JourneyTimers(
        parts.engine,
        parts.relay,
        settings.schema_name,
        poll_interval_ms=settings.journey_timer_poll_interval_ms,
        batch_size=settings.journey_timer_batch,
        step_limit=settings.journey_step_limit,
        policy=policy,
    )
    enrolments = MemberEnrolments(
        parts.engine,
        settings.schema_name,
        poll_interval_ms=settings.journey_timer_poll_interval_ms,
        batch_size=settings.journey_enrolment_batch,
        lookahead_seconds=settings.journey_enrolment_lookahead_s,
        step_limit=settings.journey_step_limit,
        policy=policy,
    )
    upkeep = EvidenceUpkeep(
        parts.engine,
        settings.schema_name,
        policy,
        every_seconds=settings.journey_prior_refit_interval_s,
        message_days=settings.journey_message_retention_days,
        decision_days=settings.journey_decision_retention_days,
    )
    references = HttpReferences(
        content_url=settings.journey_content_url,
        segment_url=settings.journey_segment_url,
        dispatch_url=settings.journey_dispatch_url,
        admin_token=settings.admin_token.get_secret_value(),
        timeout_seconds=settings.journey_reference_timeout_ms / 1000,
    )
    dry_run_sources = HttpDryRunSources(
        segment_url=settings.journey_segment_url,
        dispatch_url=settings.journey_dispatch_url,
        content_url=settings.journey_content_url,
        admin_token=settings.admin_token.get_secret_value(),
        timeout_seconds=settings.journey_dry_run_timeout_ms / 1000,
        behaviour_limit=settings.journey_dry_run_behaviour_limit,
    )
    return create_app(
        settings,
        title="Journey",
        description="Journeys as graphs: who enters, what they are sent, when, and what next.",
        routers=[api.router, api.profiles_router, broadcast_api.router],
        workers=parts.workers(upkeep, timers, enrolments, consumer),
        readiness_checks=parts.readiness_checks(settings),
        state={
            **parts.app_state(settings),
            "references": references,
            "dry_run_sources": dry_run_sources,
        },
    )

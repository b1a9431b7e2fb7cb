"""The journey REST API: drafts (CRUD), publishing versions, pause and resume, stats, and the
learned decisions."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Response

from libs.common.api import StoreTransactions, from_state, transactions_of
from libs.common.auth import require_admin
from libs.common.errors import MANAGEMENT_ERRORS, ApiError, error_responses
from services.journey.conditions import InvalidDefinition, known_stages_only
from services.journey.dry_run import DryRunReport, dry_run
from services.journey.dry_run_sources import (
    DryRunSources,
    Replayed,
    events_heard,
    people,
    templates_sent,
)
from services.journey.engine import JOURNEY, Decision
from services.journey.enrolment import Enrolment
from services.journey.graph import Journey
from services.journey.references import References, ReferenceUnavailable, check_references
from services.journey.schemas import (
    JOURNEY_ID_PATTERN,
    DecisionList,
    DecisionResponse,
    DryRunMessages,
    DryRunPath,
    DryRunRequest,
    DryRunResponse,
    GraphCheck,
    JourneyGraph,
    JourneyList,
    JourneyRequest,
    JourneyResponse,
    ProfileRun,
    ProfileRuns,
    StatsResponse,
    VersionResponse,
)
from services.journey.settings import JourneySettings
from services.journey.stats import journey_stats
from services.journey.store import JourneyRow, JourneyStore, VersionRow

_T = TypeVar("_T")
JourneyIdPath = Annotated[str, Path(pattern=JOURNEY_ID_PATTERN)]
_NOT_FOUND = error_responses(404)
_NOT_FOUND_OR_UNPUBLISHED = error_responses(404, 409)


router = APIRouter(
    prefix="/journeys",
    tags=["journeys"],
    dependencies=[Depends(require_admin)],
    responses=MANAGEMENT_ERRORS,
)
profiles_router = APIRouter(
    prefix="/profiles",
    tags=["profiles"],
    dependencies=[Depends(require_admin)],
    responses=MANAGEMENT_ERRORS,
)
ProfileIdPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^\x00]*$")]
Stores = Annotated[StoreTransactions[JourneyStore], Depends(transactions_of(JourneyStore))]
ReferencesDep = Annotated[References, Depends(from_state("references", References))]
SettingsDep = Annotated[JourneySettings, Depends(from_state("settings", JourneySettings))]
SourcesDep = Annotated[DryRunSources, Depends(from_state("dry_run_sources", DryRunSources))]


async def validated(references: References, journey_id: str, version: int, graph: Any) -> Journey:
    """The parsed graph, its templates and segment known to exist; else a 422 or 503."""
    try:
        with known_stages_only():
            journey = Journey.parse(journey_id, version, graph)
        await check_references(journey, references)
    except InvalidDefinition as error:
        raise ApiError(422, "invalid_journey", str(error), error.path) from None
    except ReferenceUnavailable as error:
        raise ApiError(503, "dependency_unavailable", str(error), error.service) from None
    return journey


@router.post("", status_code=201, responses=error_responses(409, 503))
async def create_journey(
    request: JourneyRequest, stores: Stores, references: ReferencesDep
) -> JourneyResponse:
    """Create a journey as a draft; it is validated now and again when published."""
    journey_id = request.id or f"jrn_{uuid.uuid4().hex[:20]}"
    await validated(references, journey_id, 1, request.graph())
    async with stores() as store:
        row = await store.insert_journey(
            journey_id, request.name, request.description, request.graph()
        )
    if row is None:
        raise ApiError(409, "journey_exists", f"Journey {journey_id!r} already exists.", "id")
    return _response(row)


@router.post("/validate", responses=error_responses(503))
async def validate(request: JourneyGraph, references: ReferencesDep) -> GraphCheck:
    """Check a graph as create, change and publish would, storing nothing: a 422 names the
    first place that is wrong (`nodes.<id>.<field>`), as theirs would. For editors that check
    as a person builds."""
    journey = await validated(references, "validate", 1, request.graph())
    return GraphCheck(valid=True, nodes=len(journey.nodes))


@router.get("")
async def list_journeys(stores: Stores) -> JourneyList:
    async with stores() as store:
        rows = await store.list_journeys()
    return JourneyList(journeys=[_response(row) for row in rows])


@router.get("/{journey_id}", responses=_NOT_FOUND)
async def get_journey(journey_id: JourneyIdPath, stores: Stores) -> JourneyResponse:
    """The journey, its draft and every published version."""
    async with stores() as store:
        row = _found(await store.get_journey(journey_id), journey_id)
        versions = await store.versions(journey_id)
    return _response(row, versions)


@router.put("/{journey_id}", responses=error_responses(404, 503))
async def replace_journey(
    journey_id: JourneyIdPath,
    request: JourneyRequest,
    stores: Stores,
    references: ReferencesDep,
) -> JourneyResponse:
    """Replace the draft; published versions and the runs in them are untouched."""
    if request.id is not None and request.id != journey_id:
        raise ApiError(422, "id_mismatch", "The body's id differs from the path's.", "id")
    await validated(references, journey_id, 1, request.graph())
    async with stores() as store:
        _journey_only(await store.get_journey(journey_id), journey_id)
        updated = await store.update_draft(
            journey_id, request.name, request.description, request.graph()
        )
    return _response(_found(updated, journey_id))


@router.delete("/{journey_id}", status_code=204, responses=_NOT_FOUND)
async def delete_journey(journey_id: JourneyIdPath, stores: Stores) -> Response:
    """Delete the journey with its versions, runs, timers and stats; nothing more is sent."""
    async with stores() as store:
        _journey_only(await store.get_journey(journey_id), journey_id)
        await store.delete_journey(journey_id)
    return Response(status_code=204)


@router.post("/{journey_id}/publish", responses=error_responses(404, 409, 503))
async def publish(
    journey_id: JourneyIdPath, stores: Stores, references: ReferencesDep, settings: SettingsDep
) -> JourneyResponse:
    """Freeze the draft as the next version: new profiles enter it, runs finish their own.
    With `entry.current_members`, the segment's members now enter it too, throttled; an
    earlier version's entry of current members stops."""
    async with stores() as store:
        checked = _journey_only(await store.get_journey(journey_id), journey_id)
    await validated(references, journey_id, (checked.published_version or 0) + 1, checked.draft)
    async with stores() as store:
        row = _journey_only(await store.get_journey(journey_id, lock=True), journey_id)
        if row.draft != checked.draft or row.published_version != checked.published_version:
            raise ApiError(409, "journey_changed", "The journey changed while publishing.")
        version = (row.published_version or 0) + 1
        journey = Journey.parse(journey_id, version, row.draft)
        row = await store.publish(row, journey)
        await store.cancel_enrolments(journey_id)
        if journey.entry.current_members:
            await store.add_enrolment(_current_members(journey, settings, datetime.now(UTC)))
        versions = await store.versions(journey_id)
    return _response(row, versions)


def _current_members(journey: Journey, settings: JourneySettings, now: datetime) -> Enrolment:
    assert journey.entry.segment is not None
    return Enrolment(
        id=f"{journey.id}:v{journey.version}",
        journey_id=journey.id,
        version=journey.version,
        segment_id=journey.entry.segment,
        per_minute=journey.entry.per_minute or settings.journey_entry_per_minute,
        due_at=now,
        at=now,
    )


@router.post("/{journey_id}/pause", responses=_NOT_FOUND_OR_UNPUBLISHED)
async def pause(journey_id: JourneyIdPath, stores: Stores) -> JourneyResponse:
    """No new entries and no sends: runs reaching a send node hold there until resumed."""
    async with stores() as store:
        _published(_journey_only(await store.get_journey(journey_id, lock=True), journey_id))
        row = await store.set_status(journey_id, "paused")
    return _response(_found(row, journey_id))


@router.post("/{journey_id}/resume", responses=_NOT_FOUND_OR_UNPUBLISHED)
async def resume(journey_id: JourneyIdPath, stores: Stores) -> JourneyResponse:
    """Entries start again; held runs send and go on (the timer worker picks them up)."""
    async with stores() as store:
        _published(_journey_only(await store.get_journey(journey_id, lock=True), journey_id))
        row = await store.set_status(journey_id, "active")
        await store.release_held_runs(journey_id)
    return _response(_found(row, journey_id))


@router.get("/{journey_id}/stats", responses=_NOT_FOUND)
async def stats(journey_id: JourneyIdPath, stores: Stores) -> StatsResponse:
    """Per node, per version and in total: entered, waiting, completed, exited, goal reached."""
    async with stores() as store:
        _found(await store.get_journey(journey_id), journey_id)
        rows = [*await store.counters(journey_id), *await store.waiting(journey_id)]
    return journey_stats(journey_id, rows)


@router.get("/{journey_id}/decisions", responses=_NOT_FOUND)
async def decisions(
    journey_id: JourneyIdPath,
    profile_id: Annotated[str | None, Query(max_length=255)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    *,
    stores: Stores,
) -> DecisionList:
    """The learned decisions of the journey's runs (one profile's when given), newest first:
    each best time and best channel chosen, with its probability."""
    async with stores() as store:
        _found(await store.get_journey(journey_id), journey_id)
        found = await store.decisions(journey_id, profile_id, limit)
    return DecisionList(decisions=[_decision(decision) for decision in found])


@profiles_router.get("/{profile_id}/runs")
async def profile_runs(
    profile_id: ProfileIdPath,
    stores: Stores,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ProfileRuns:
    """The journeys a person is in or went through: each run, where it stands, latest first."""
    async with stores() as store:
        rows = await store.runs_of_profile(profile_id, limit)
    return ProfileRuns(profile_id=profile_id, runs=[ProfileRun.model_validate(r) for r in rows])


def _decision(decision: Decision) -> DecisionResponse:
    return DecisionResponse(
        kind=decision.kind,
        profile_id=decision.profile_id,
        run=decision.run,
        version=decision.version,
        node_id=decision.node_id,
        decided_at=decision.decided_at,
        explored=decision.explored,
        probability=decision.probability,
        channel=decision.channel,
        hour=decision.hour,
        wake_at=decision.wake_at,
        ranking=list(decision.ranking),
        probabilities=decision.probabilities,
        request_id=decision.request_id,
    )


@router.post("/{journey_id}/dry-run", responses=error_responses(404, 503))
async def dry_run_journey(
    journey_id: JourneyIdPath,
    request: DryRunRequest,
    stores: Stores,
    sources: SourcesDep,
    settings: SettingsDep,
) -> DryRunResponse:
    """Replay the draft over the last `days` of behaviour and today's profiles, judging each
    message by dispatch's policy; nothing is stored or sent."""
    async with stores() as store:
        row = _journey_only(await store.get_journey(journey_id), journey_id)
    try:
        with known_stages_only():
            journey = Journey.parse(journey_id, (row.published_version or 0) + 1, row.draft)
    except InvalidDefinition as error:
        raise ApiError(422, "invalid_journey", str(error), error.path) from None
    until = datetime.now(UTC)
    return await rehearse(
        journey, until - timedelta(days=request.days), until, stores, sources, settings
    )


async def rehearse(
    journey: Journey,
    since: datetime,
    until: datetime,
    stores: StoreTransactions[JourneyStore],
    sources: DryRunSources,
    settings: JourneySettings,
) -> DryRunResponse:
    """The dry run of a parsed journey from `since` to `until`; a 503 names the service whose
    data it could not have."""
    try:
        replayed = await sources.behaviours(events_heard(journey), since)
        rules = replace(
            await sources.contact_rules(),
            templates=await sources.template_rules(templates_sent(journey)),
        )
    except ReferenceUnavailable as error:
        raise ApiError(503, "dependency_unavailable", str(error), error.service) from None
    async with stores() as store:
        replayed_people = await people(journey, store, replayed, since)
    report = await asyncio.to_thread(
        dry_run, journey, replayed_people, rules, until, step_limit=settings.journey_step_limit
    )
    return _dry_run_response(journey, report, since, until, replayed)


def _dry_run_response(
    journey: Journey, report: DryRunReport, since: datetime, until: datetime, replayed: Replayed
) -> DryRunResponse:
    sends: dict[str, dict[str, DryRunMessages]] = {}
    for (node_id, channel, outcome), count in sorted(report.messages.items()):
        by_channel = sends.setdefault(node_id, {})
        messages = by_channel.setdefault(channel, DryRunMessages(sent=0, suppressed=0))
        setattr(messages, outcome, count)
    nodes: dict[str, dict[str, int]] = {}
    for (node_id, counter), count in sorted(report.counters.items()):
        nodes.setdefault(node_id, {})[counter] = count
    return DryRunResponse(
        journey_id=journey.id,
        version=journey.version,
        since=since,
        until=until,
        people=report.people,
        behaviours=len(replayed.behaviours),
        behaviours_truncated=replayed.truncated,
        entries=report.entries,
        sends=sends,
        policy=dict(sorted(report.policy.items())),
        total={**nodes.pop(JOURNEY, {}), "in_progress": report.in_progress},
        nodes=nodes,
        paths=[DryRunPath(nodes=list(path), runs=runs) for path, runs in report.top_paths()],
    )


def _found(value: _T | None, journey_id: str) -> _T:
    if value is None:
        raise ApiError(404, "journey_not_found", f"There is no journey {journey_id!r}.")
    return value


def _journey_only(row: JourneyRow | None, journey_id: str) -> JourneyRow:
    """A journey the journeys API manages: a broadcast is managed through /broadcasts."""
    if row is None or row.kind != "journey":
        raise ApiError(404, "journey_not_found", f"There is no journey {journey_id!r}.")
    return row


def _published(row: JourneyRow) -> None:
    if row.published_version is None:
        raise ApiError(409, "journey_not_published", "Publish the journey first.")


def _response(row: JourneyRow, versions: list[VersionRow] | None = None) -> JourneyResponse:
    return JourneyResponse(
        id=row.id,
        name=row.name,
        description=row.description,
        status=row.status,
        published_version=row.published_version,
        draft=row.draft,
        versions=None
        if versions is None
        else [
            VersionResponse(version=v.version, published_at=v.published_at, definition=v.definition)
            for v in versions
        ],
        created_at=row.created_at,
        updated_at=row.updated_at,
    )

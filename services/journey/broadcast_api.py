"""The broadcasts REST API: create a broadcast (a one-node journey entered by a segment's members
at send time), see its progress, pause, resume and cancel it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from libs.common.api import StoreTransactions, from_state, transactions_of
from libs.common.auth import require_admin
from libs.common.errors import MANAGEMENT_ERRORS, ApiError, error_responses
from services.journey.api import SourcesDep, rehearse, validated
from services.journey.broadcast import (
    SEND_NODE,
    Broadcast,
    broadcast_field,
    parse_best_time_within,
    parse_repeat,
)
from services.journey.conditions import InvalidDefinition
from services.journey.engine import JOURNEY, OUTCOME_COUNTER
from services.journey.enrolment import Enrolment
from services.journey.graph import Journey
from services.journey.references import References
from services.journey.schemas import (
    JOURNEY_ID_PATTERN,
    BroadcastDryRunRequest,
    BroadcastList,
    BroadcastProgress,
    BroadcastRequest,
    BroadcastResponse,
    DryRunResponse,
    OccurrenceResponse,
)
from services.journey.settings import JourneySettings
from services.journey.store import BroadcastRow, JourneyRow, JourneyStore, StatRow

router = APIRouter(
    prefix="/broadcasts",
    tags=["broadcasts"],
    dependencies=[Depends(require_admin)],
    responses=MANAGEMENT_ERRORS,
)
Stores = Annotated[StoreTransactions[JourneyStore], Depends(transactions_of(JourneyStore))]
ReferencesDep = Annotated[References, Depends(from_state("references", References))]
SettingsDep = Annotated[JourneySettings, Depends(from_state("settings", JourneySettings))]
BroadcastIdPath = Annotated[str, Path(pattern=JOURNEY_ID_PATTERN)]
_NOT_FOUND_OR_CANCELLED = error_responses(404, 409)
DRY_RUN_ID = "brd_dry_run"
_DRY_RUN_REACH = timedelta(days=366)
"""The id a broadcast's dry run replays it under (it is never stored)."""


@router.post("", status_code=201, responses=error_responses(409, 503))
async def create_broadcast(
    request: BroadcastRequest, stores: Stores, references: ReferencesDep, settings: SettingsDep
) -> BroadcastResponse:
    """Schedule the broadcast: at its time (each occurrence's), the segment's members then are
    sent the template, `per_minute` a minute at most."""
    broadcast_id = request.id or f"brd_{uuid.uuid4().hex[:20]}"
    now = datetime.now(UTC)
    broadcast = _broadcast(request, settings)
    try:
        broadcast.check_times(now)
    except InvalidDefinition as error:
        raise _invalid(error.path, error.message) from None
    journey = await _validated(references, broadcast_id, broadcast)
    async with stores() as store:
        row = await store.insert_journey(
            broadcast_id, request.name, request.description, broadcast.graph(), "broadcast"
        )
        if row is None:
            raise ApiError(409, "broadcast_exists", f"{broadcast_id!r} is already taken.", "id")
        await store.insert_broadcast(broadcast_id, broadcast.to_json())
        row = await store.publish(row, journey)
        for enrolment in broadcast.enrolments(broadcast_id, now):
            await store.add_enrolment(enrolment)
    return await _answer(stores, broadcast_id)


@router.post("/dry-run", responses=error_responses(503))
async def dry_run_broadcast(
    request: BroadcastDryRunRequest,
    stores: Stores,
    references: ReferencesDep,
    sources: SourcesDep,
    settings: SettingsDep,
) -> DryRunResponse:
    """Judge the broadcast as if sent at `at` (absent: now) to the segment's members today, by
    dispatch's policy; nothing is stored or sent."""
    now = datetime.now(UTC)
    at = request.at or now
    if not now - _DRY_RUN_REACH <= at <= now + _DRY_RUN_REACH:
        raise _invalid("at", "within a year of now")
    broadcast = Broadcast(
        segment=request.segment,
        channel=request.channel,
        template_id=request.template_id,
        per_minute=settings.journey_entry_per_minute,
        variables=request.variables,
        topic=request.topic,
    )
    journey = await _validated(references, DRY_RUN_ID, broadcast)
    return await rehearse(journey, at, at, stores, sources, settings)


@router.get("")
async def list_broadcasts(stores: Stores) -> BroadcastList:
    async with stores() as store:
        rows = await store.list_broadcasts()
    return BroadcastList(broadcasts=[await _answer(stores, row.id) for row in rows])


@router.get("/{broadcast_id}", responses=error_responses(404))
async def get_broadcast(broadcast_id: BroadcastIdPath, stores: Stores) -> BroadcastResponse:
    """The broadcast with its progress: planned, entered, requested, sent, suppressed, failed,
    waiting, exited."""
    return await _answer(stores, broadcast_id)


@router.post("/{broadcast_id}/pause", responses=_NOT_FOUND_OR_CANCELLED)
async def pause_broadcast(broadcast_id: BroadcastIdPath, stores: Stores) -> BroadcastResponse:
    """Nothing is sent until resumed: members whose turn comes are held at the send."""
    async with stores() as store:
        _not_cancelled(await _locked(store, broadcast_id))
        await store.set_broadcast_status(broadcast_id, "paused")
        await store.set_status(broadcast_id, "paused")
    return await _answer(stores, broadcast_id)


@router.post("/{broadcast_id}/resume", responses=_NOT_FOUND_OR_CANCELLED)
async def resume_broadcast(broadcast_id: BroadcastIdPath, stores: Stores) -> BroadcastResponse:
    """Sending goes on: members held meanwhile are sent to one after another, `per_minute` a
    minute; members whose turn has not come keep it."""
    async with stores() as store:
        row = _not_cancelled(await _locked(store, broadcast_id))
        await store.set_broadcast_status(broadcast_id, "active")
        await store.set_status(broadcast_id, "active")
        await store.release_held_runs(broadcast_id, Broadcast.from_json(row.spec).per_minute)
    return await _answer(stores, broadcast_id)


@router.post("/{broadcast_id}/cancel", responses=error_responses(404))
async def cancel_broadcast(broadcast_id: BroadcastIdPath, stores: Stores) -> BroadcastResponse:
    """No one more is sent to: occurrences to come are dropped, members still waiting exit
    (`cancelled`). Messages already requested go on."""
    async with stores() as store:
        await _locked(store, broadcast_id)
        await store.cancel_enrolments(broadcast_id)
        await store.set_broadcast_status(broadcast_id, "cancelled")
        # Paused too: a run a consumer batch holds meanwhile holds at the send, sending nothing.
        await store.set_status(broadcast_id, "paused")
        await store.exit_live_runs(broadcast_id, "cancelled")
    return await _answer(stores, broadcast_id)


@router.delete("/{broadcast_id}", status_code=204, responses=error_responses(404))
async def delete_broadcast(broadcast_id: BroadcastIdPath, stores: Stores) -> Response:
    """Delete the broadcast with its runs, timers, occurrences and stats; nothing more is sent."""
    async with stores() as store:
        await _locked(store, broadcast_id)
        await store.delete_journey(broadcast_id)
    return Response(status_code=204)


def _broadcast(request: BroadcastRequest, settings: SettingsDep) -> Broadcast:
    if request.at is not None and request.at_local_time is not None:
        raise _invalid("at", "give `at` or `at_local_time`, not both")
    if request.at_best_time is not None and request.at_local_time is not None:
        raise _invalid("at_best_time", "give `at_local_time` or `at_best_time`, not both")
    best_time, given = request.at_best_time, request.repeat
    try:
        within = parse_best_time_within(best_time.within) if best_time is not None else None
        repeat = parse_repeat(given.every, given.cron, given.times) if given is not None else None
    except InvalidDefinition as error:
        raise _invalid(error.path, error.message) from None
    return Broadcast(
        segment=request.segment,
        channel=request.channel,
        template_id=request.template_id,
        per_minute=request.per_minute or settings.journey_entry_per_minute,
        variables=request.variables,
        at=request.at,
        local_time=request.at_local_time,
        best_time_within=within,
        repeat=repeat,
        topic=request.topic,
        contact=request.contact,
    )


async def _validated(references: References, broadcast_id: str, broadcast: Broadcast) -> Journey:
    """The journey it runs; a 422 names the broadcast's field (an unknown segment, template or
    topic: `segment`, `template_id`, `topic`), a 503 the service that could not say."""
    try:
        return await validated(references, broadcast_id, 1, broadcast.graph())
    except ApiError as error:
        if error.status_code != 422 or error.field is None:
            raise
        field = broadcast_field(error.field)
        raise _invalid(field, error.message.removeprefix(f"{error.field}: ")) from None


def _invalid(field: str, message: str) -> ApiError:
    """A 422 naming the request's field as FastAPI's own validation does (`body.<field>`)."""
    return ApiError(422, "invalid_broadcast", f"body.{field}: {message}", f"body.{field}")


async def _locked(store: JourneyStore, broadcast_id: str) -> BroadcastRow:
    return _found(await store.get_broadcast(broadcast_id, lock=True), broadcast_id)


def _found(row: BroadcastRow | None, broadcast_id: str) -> BroadcastRow:
    if row is None:
        raise ApiError(404, "broadcast_not_found", f"There is no broadcast {broadcast_id!r}.")
    return row


def _not_cancelled(row: BroadcastRow) -> BroadcastRow:
    if row.status == "cancelled":
        raise ApiError(409, "broadcast_cancelled", "The broadcast was cancelled.")
    return row


async def _answer(stores: Stores, broadcast_id: str) -> BroadcastResponse:
    async with stores() as store:
        row = _found(await store.get_broadcast(broadcast_id), broadcast_id)
        journey = await store.get_journey(broadcast_id)
        enrolments = await store.enrolments_of(broadcast_id)
        counters = await store.counters(broadcast_id)
        waiting = await store.waiting(broadcast_id)
    assert journey is not None
    return _response(row, journey, enrolments, counters, waiting)


def _response(
    row: BroadcastRow,
    journey: JourneyRow,
    enrolments: list[Enrolment],
    counters: list[StatRow],
    waiting: list[StatRow],
) -> BroadcastResponse:
    broadcast = Broadcast.from_json(row.spec)
    progress = _progress(counters, waiting)
    return BroadcastResponse(
        id=row.id,
        name=journey.name,
        description=journey.description,
        status=_status(row.status, enrolments, progress.waiting),
        segment=broadcast.segment,
        channel=broadcast.channel,
        template_id=broadcast.template_id,
        variables=broadcast.variables,
        at=broadcast.at,
        at_local_time=broadcast.local_time,
        at_best_time=row.spec.get("at_best_time"),
        per_minute=broadcast.per_minute,
        repeat=row.spec.get("repeat"),
        topic=broadcast.topic,
        contact=broadcast.contact,
        progress=progress,
        occurrences=[
            OccurrenceResponse(
                occurrence=e.occurrence,
                at=e.at,
                at_local_time=e.local_time,
                status=e.status,
                started_at=e.started_at,
                planned=e.scheduled,
            )
            for e in enrolments
        ],
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _progress(counters: list[StatRow], waiting: list[StatRow]) -> BroadcastProgress:
    def total(node_id: str, counter: str) -> int:
        return sum(r.value for r in counters if (r.node_id, r.counter) == (node_id, counter))

    return BroadcastProgress(
        planned=total(JOURNEY, "entered"),
        entered=total(SEND_NODE, "entered"),
        requested=total(SEND_NODE, "completed"),
        sent=total(SEND_NODE, f"{OUTCOME_COUNTER}sent"),
        suppressed=total(SEND_NODE, f"{OUTCOME_COUNTER}suppressed"),
        failed=total(SEND_NODE, f"{OUTCOME_COUNTER}failed"),
        deferred=total(SEND_NODE, f"{OUTCOME_COUNTER}deferred"),
        waiting=sum(r.value for r in waiting),
        exited=total(JOURNEY, "exited"),
    )


def _status(stored: str, enrolments: list[Enrolment], waiting: int) -> str:
    """`cancelled` and `paused` as set; else `sending` while members are taken or wait their
    turn, `scheduled` while an occurrence is still to come, `done` after the last."""
    if stored in ("cancelled", "paused"):
        return stored
    pending = [e for e in enrolments if e.status == "pending"]
    if waiting or any(e.started_at is not None for e in pending):
        return "sending"
    return "scheduled" if pending else "done"

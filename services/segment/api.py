"""The segment REST API: definitions (CRUD), their members, and previews."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Response

from libs.common.api import RelayDep, StoreTransactions, from_state, transactions_of
from libs.common.auth import require_admin
from libs.common.bus import write_outbox
from libs.common.errors import MANAGEMENT_ERRORS, ApiError, error_responses
from libs.common.events import Event
from services.segment.membership import evaluate_in_bulk, membership_event
from services.segment.rules import (
    InvalidDefinition,
    SegmentRule,
    Transition,
    parse_conditions,
    references,
)
from services.segment.schemas import (
    SEGMENT_ID_PATTERN,
    BehavioursPage,
    Evaluation,
    EventName,
    MemberResponse,
    MembersPage,
    PreviewRequest,
    PreviewResponse,
    SegmentList,
    SegmentRequest,
    SegmentResponse,
)
from services.segment.settings import SegmentSettings
from services.segment.store import SegmentRow, SegmentStore

_T = TypeVar("_T")
SegmentIdPath = Annotated[str, Path(pattern=SEGMENT_ID_PATTERN)]
_NOT_FOUND = error_responses(404)


router = APIRouter(
    prefix="/segments",
    tags=["segments"],
    dependencies=[Depends(require_admin)],
    responses=MANAGEMENT_ERRORS,
)
behaviours_router = APIRouter(
    prefix="/behaviours",
    tags=["behaviours"],
    dependencies=[Depends(require_admin)],
    responses=MANAGEMENT_ERRORS,
)
Stores = Annotated[StoreTransactions[SegmentStore], Depends(transactions_of(SegmentStore))]
SettingsDep = Annotated[SegmentSettings, Depends(from_state("settings", SegmentSettings))]


async def _publish(
    store: SegmentStore, settings: SegmentSettings, events: Sequence[Event[Any]]
) -> None:
    # Bounded rows: a bulk evaluation can emit a whole customer base's worth of events.
    chunk = settings.segment_outbox_chunk
    for start in range(0, len(events), chunk):
        await write_outbox(store.session, settings.schema_name, events[start : start + chunk])


@router.post("", status_code=201, responses=error_responses(409))
async def create_segment(
    request: SegmentRequest, stores: Stores, settings: SettingsDep, relay: RelayDep
) -> SegmentResponse:
    """Create a segment and evaluate it over every profile (entered events for matches)."""
    segment_id = request.id or f"seg_{uuid.uuid4().hex[:20]}"
    refs = _validated_refs(segment_id, request.conditions)
    now = datetime.now(UTC)
    async with stores() as store:
        await store.hold_evaluation_lock(exclusive=True)
        row = await store.insert_segment(
            segment_id, request.name, request.description, request.conditions, refs
        )
        if row is None:
            raise ApiError(409, "segment_exists", f"Segment {segment_id!r} already exists.", "id")
        changes, events = await evaluate_in_bulk(store, _rule(row), now)
        await _publish(store, settings, events)
    relay.notify()
    return _response(row, Evaluation(entered=len(changes.entered), exited=len(changes.exited)))


@router.get("")
async def list_segments(stores: Stores) -> SegmentList:
    async with stores() as store:
        rows = await store.list_segments()
    return SegmentList(segments=[_response(row) for row in rows])


@router.get("/{segment_id}", responses=_NOT_FOUND)
async def get_segment(segment_id: SegmentIdPath, stores: Stores) -> SegmentResponse:
    async with stores() as store:
        row = await store.get_segment(segment_id)
    return _response(_found(row, segment_id))


@router.put("/{segment_id}", responses=_NOT_FOUND)
async def replace_segment(
    segment_id: SegmentIdPath,
    request: SegmentRequest,
    stores: Stores,
    settings: SettingsDep,
    relay: RelayDep,
) -> SegmentResponse:
    """Change a segment; changed conditions make a new version, evaluated over every profile."""
    if request.id is not None and request.id != segment_id:
        raise ApiError(422, "id_mismatch", "The body's id differs from the path's.", "id")
    refs = _validated_refs(segment_id, request.conditions)
    now = datetime.now(UTC)
    evaluation = None
    async with stores() as store:
        await store.hold_evaluation_lock(exclusive=True)
        updated = await store.update_segment(
            segment_id, request.name, request.description, request.conditions, refs
        )
        row, changed = _found(updated, segment_id)
        if changed:
            changes, events = await evaluate_in_bulk(store, _rule(row), now)
            await _publish(store, settings, events)
            evaluation = Evaluation(entered=len(changes.entered), exited=len(changes.exited))
    relay.notify()
    return _response(row, evaluation)


@router.delete("/{segment_id}", status_code=204, responses=_NOT_FOUND)
async def delete_segment(
    segment_id: SegmentIdPath, stores: Stores, settings: SettingsDep, relay: RelayDep
) -> Response:
    """Delete a segment: its members leave it (segment.exited, reason `bulk`)."""
    now = datetime.now(UTC)
    async with stores() as store:
        await store.hold_evaluation_lock(exclusive=True)
        version, members = _found(await store.delete_segment(segment_id), segment_id)
        await _publish(
            store,
            settings,
            [
                membership_event(
                    Transition(segment_id, version, profile_id, entered=False),
                    occurred_at=now,
                    reason="bulk",
                )
                for profile_id in members
            ],
        )
    relay.notify()
    return Response(status_code=204)


@router.get("/{segment_id}/members", responses=_NOT_FOUND)
async def list_members(
    segment_id: SegmentIdPath,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
    *,
    stores: Stores,
) -> MembersPage:
    """Members in profile id order, a page at a time."""
    async with stores() as store:
        _found(await store.get_segment(segment_id), segment_id)
        members = await store.members(segment_id, _after(cursor), limit)
    next_cursor = _cursor(members[-1].profile_id) if len(members) == limit else None
    return MembersPage(
        members=[
            MemberResponse(
                profile_id=m.profile_id,
                segment_version=m.segment_version,
                entered_at=m.entered_at,
            )
            for m in members
        ],
        next_cursor=next_cursor,
    )


@router.post("/preview")
async def preview(request: PreviewRequest, stores: Stores) -> PreviewResponse:
    """How many profiles a definition would have now, and a sample of them, without saving it."""
    condition = _parsed(request.conditions)
    now = datetime.now(UTC)
    sample: list[str] = []
    async with stores() as store:
        count = await store.count_matching(condition, now)
        if request.sample_size:
            sample = await store.sample_matching(condition, now, request.sample_size)
    return PreviewResponse(count=count, sample=sample, evaluated_at=now)


@behaviours_router.get("", responses={200: {"model": BehavioursPage}})
async def list_behaviours(
    event: Annotated[list[EventName], Query(min_length=1, max_length=50)],
    since: datetime,
    limit: Annotated[int, Query(ge=1, le=2_000_000)] = 1_000_000,
    *,
    stores: Stores,
) -> Response:
    """The behaviours of the named events from `since` on, oldest first: what journey's dry run
    replays (segment keeps every behaviour for its windows; journey keeps none)."""
    if since.tzinfo is None:
        raise ApiError(
            422, "invalid_request", "query.since: give an offset, such as Z", "query.since"
        )
    async with stores() as store:
        rows, truncated = await store.behaviours_since(event, since, limit)
    body = f'{{"behaviours": {rows}, "truncated": {"true" if truncated else "false"}}}'
    return Response(body, media_type="application/json")


def _parsed(conditions: Any) -> Any:
    try:
        return parse_conditions(conditions)
    except InvalidDefinition as error:
        raise ApiError(422, "invalid_definition", str(error), error.path) from None


def _validated_refs(segment_id: str, conditions: Any) -> list[str]:
    refs = references(_parsed(conditions))
    if f"segment:{segment_id}" in refs:
        raise ApiError(
            422, "invalid_definition", "conditions: a segment cannot contain itself", "conditions"
        )
    return refs


def _rule(row: SegmentRow) -> SegmentRule:
    return SegmentRule.parse(row.id, row.version, row.conditions)


def _found(value: _T | None, segment_id: str) -> _T:
    if value is None:
        raise ApiError(404, "segment_not_found", f"There is no segment {segment_id!r}.")
    return value


def _response(row: SegmentRow, evaluation: Evaluation | None = None) -> SegmentResponse:
    return SegmentResponse(
        id=row.id,
        name=row.name,
        description=row.description,
        version=row.version,
        conditions=row.conditions,
        created_at=row.created_at,
        updated_at=row.updated_at,
        evaluation=evaluation,
    )


def _cursor(profile_id: str) -> str:
    return base64.urlsafe_b64encode(profile_id.encode()).decode()


def _after(cursor: str | None) -> str:
    if cursor is None:
        return ""
    try:
        after = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeDecodeError):
        after = None
    if after is None or "\x00" in after:
        raise ApiError(422, "invalid_cursor", "The cursor is not one this API gave.", "cursor")
    return after

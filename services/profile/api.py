"""REST routes: read a profile by id or identifier, page its events, erase it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response, status
from fastapi.responses import RedirectResponse

from libs.common.auth import require_admin
from libs.common.bus import OutboxRelay, write_outbox
from libs.common.db import Sessions, session_transaction
from libs.common.errors import MANAGEMENT_ERRORS, ApiError, error_responses
from libs.common.events import Event, ProfileDeleted
from services.profile import features
from services.profile.features import FeatureRules
from services.profile.handlers import SOURCE
from services.profile.identity import Identifier, new_profile_id, parse_identifier
from services.profile.schemas import (
    Engagement,
    ErasureAccepted,
    ProfileEventOut,
    ProfileEventPage,
    ProfileList,
    ProfileOut,
    RfmScores,
)
from services.profile.settings import ProfileSettings
from services.profile.store import Connection, ProfileStore, StoredProfile

ProfileIdPath = Annotated[
    str,
    Path(
        pattern=r"^prf_[0-9A-Za-z_-]{1,124}$",
        description="A profile id; a merged profile's id redirects (308) to its survivor.",
    ),
]
# A merged profile's id answers with its survivor's URL; an unknown one with 404.
_FOUND_ELSEWHERE: dict[int | str, dict[str, Any]] = {
    308: {"description": "Merged into another profile: `Location` is the survivor's URL."},
    **error_responses(404),
}


def profile_router(settings: ProfileSettings, sessions: Sessions, relay: OutboxRelay) -> APIRouter:
    store = ProfileStore(settings.schema_name)
    rules = FeatureRules.from_settings(settings)
    external_kinds = tuple(settings.profile_external_id_kinds)
    router = APIRouter(
        prefix="/profiles",
        tags=["profiles"],
        dependencies=[Depends(require_admin)],
        responses=MANAGEMENT_ERRORS,
    )

    @router.get("/{profile_id}", response_model=ProfileOut, responses=_FOUND_ELSEWHERE)
    async def get_profile(profile_id: ProfileIdPath) -> ProfileOut | Response:
        """The profile; a merged profile's id redirects to its survivor."""
        async with session_transaction(sessions) as session:
            connection = await store.connection(session)
            stored = await store.profile(connection, profile_id)
            if stored is None:
                return await _redirect_or_404(store, connection, profile_id, "")
        return _profile_out(stored, rules)

    @router.get("", response_model=ProfileList)
    async def find_profiles(
        identifier: Annotated[
            str,
            Query(
                max_length=512,
                description="`<type>:<value>`, e.g. `email:a@b.c`, `user_id:u1`.",
            ),
        ],
    ) -> ProfileList:
        """The profiles an identifier belongs to: none or one."""
        try:
            if "\x00" in identifier:
                raise ValueError("an identifier cannot contain NUL characters")
            wanted = parse_identifier(identifier, external_kinds)
        except ValueError as error:
            raise ApiError(422, "invalid_identifier", str(error), "identifier") from None
        async with session_transaction(sessions) as session:
            connection = await store.connection(session)
            stored = await _profile_by_identifier(store, connection, wanted)
        return ProfileList(profiles=[] if stored is None else [_profile_out(stored, rules)])

    @router.get("/{profile_id}/events", response_model=ProfileEventPage, responses=_FOUND_ELSEWHERE)
    async def profile_events(
        profile_id: ProfileIdPath,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        before: Annotated[
            int | None, Query(ge=1, le=2**63 - 1, description="`next_before` of a page.")
        ] = None,
    ) -> ProfileEventPage | Response:
        """The profile's recent events, newest first, in pages."""
        async with session_transaction(sessions) as session:
            connection = await store.connection(session)
            if await store.profile(connection, profile_id) is None:
                return await _redirect_or_404(store, connection, profile_id, "/events")
            events = await store.recent_events(connection, profile_id, limit, before)
        return ProfileEventPage(
            events=[ProfileEventOut.model_validate(e, from_attributes=True) for e in events],
            next_before=events[-1].seq if len(events) == limit else None,
        )

    @router.delete(
        "/{profile_id}",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=ErasureAccepted,
        responses=error_responses(404),
    )
    async def erase_profile(profile_id: ProfileIdPath) -> ErasureAccepted:
        """Erase the person (a merged id erases its survivor) and tell every service to."""
        async with session_transaction(sessions) as session:
            connection = await store.connection(session)
            locked = await store.lock(connection, (), [profile_id])
            target = locked.current.get(profile_id)  # a merged id's survivor
            if target is None or not await store.erase(connection, target):
                raise _not_found(profile_id)
            deleted = _deleted(target)
            await write_outbox(session, store.schema, [deleted])
        relay.notify()
        request_id = deleted.data.erasure_request_id
        return ErasureAccepted(erasure_request_id=request_id, profile_id=target)

    return router


async def _redirect_or_404(
    store: ProfileStore, connection: Connection, profile_id: str, suffix: str
) -> Response:
    survivor = await store.survivor_of(connection, profile_id)
    if survivor is None:
        raise _not_found(profile_id)
    return RedirectResponse(f"/profiles/{survivor}{suffix}", status_code=308)


async def _profile_by_identifier(
    store: ProfileStore, connection: Connection, identifier: Identifier
) -> StoredProfile | None:
    owner = await store.owner_of(connection, identifier)
    return None if owner is None else await store.profile(connection, owner)


def _not_found(profile_id: str) -> ApiError:
    return ApiError(404, "profile_not_found", f"No profile {profile_id}.", "profile_id")


def _deleted(profile_id: str) -> Event[ProfileDeleted]:
    requested_at = datetime.now(UTC)
    request_id = "era_" + new_profile_id(requested_at.timestamp()).removeprefix("prf_")
    return Event(
        data=ProfileDeleted(
            profile_id=profile_id, erasure_request_id=request_id, requested_at=requested_at
        ),
        key=profile_id,
        source=SOURCE,
    )


def _profile_out(stored: StoredProfile, rules: FeatureRules) -> ProfileOut:
    state, now = stored.state, time.time()
    stage = None
    if state.first_seen is not None and state.last_seen is not None:
        stage = features.lifecycle_stage(
            state.first_seen, state.last_seen, state.activity, now, rules
        )
    rfm = features.rfm(state.orders, state.revenue, state.last_order_at, now, rules)
    half_life = rules.category_half_life_days
    return ProfileOut(
        id=stored.id,
        created_at=datetime.fromtimestamp(stored.created_at, UTC),
        first_seen=_time(state.first_seen),
        last_seen=_time(state.last_seen),
        identifiers=sorted(str(identifier) for identifier in stored.identifiers),
        traits=state.traits,
        tags=state.tags(),
        counters=state.counters,
        lifecycle_stage=stage,
        scores=None
        if rfm is None
        else RfmScores(
            rfm=rfm.score, recency=rfm.recency, frequency=rfm.frequency, monetary=rfm.monetary
        ),
        orders=state.orders,
        revenue=state.revenue,
        top_categories=features.top_categories(state.categories, now, half_life),
        category_scores={
            name: round(features.decayed_value(score, now, half_life), 4)
            for name, score in state.categories.items()
        },
        segments=state.segments,
        engagement=Engagement(
            by_channel=state.engagement,
            last_engaged_at=_time(state.last_engaged_at),
            attributed_conversions=round(state.attributed_conversions, 6),
            attributed_revenue={c: round(v, 6) for c, v in state.attributed_revenue.items()},
        ),
    )


def _time(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)

"""The profile screens: search by any identifier or trait, and a person's page: who they are,
their scores, segments and journeys, and their timeline (behaviour, messages, outcomes, credits).

Read-only, so every role sees them. A service that does not answer leaves its part of the page
empty with a note saying so; only the profile itself is needed.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any, Final

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from libs.common.errors import ApiError
from services.console.access import SignedIn
from services.console.managed_service import UpstreamMoved, UpstreamRefused, UpstreamUnavailable
from services.console.pages import page
from services.console.people import (
    MAX_QUERY,
    PROFILE_ID_PATTERN,
    Lookup,
    lookups_for,
    readable_time,
    timeline,
    unique_profiles,
)
from services.console.sources import ProfileApi
from services.console.upstream import UpstreamDep, part_of_page, unavailable_error

router = APIRouter(include_in_schema=False)
ProfileIdPath = Annotated[str, Path(pattern=PROFILE_ID_PATTERN)]
# How much of each source one page shows.
_TIMELINE_PART: Final = 100
_RUNS: Final = 50
_SURVIVOR = re.compile(r"/profiles/(prf_[0-9A-Za-z_-]{1,124})$")


@router.get("/profiles")
async def profiles_page(
    viewer: SignedIn,
    upstream: UpstreamDep,
    q: Annotated[str, Query(max_length=MAX_QUERY)] = "",
    after: Annotated[str | None, Query(max_length=128, pattern=r"^[^\x00]*$")] = None,
) -> HTMLResponse:
    """Profiles matching what was typed: an id, an identifier, `type:value` or `trait:value`;
    with nothing typed, every profile, a page at a time."""
    answers, refusals = [], []
    next_after = None
    for lookup in lookups_for(q):
        try:
            profiles, more = await _looked_up(upstream.profiles, lookup, after)
        except UpstreamRefused as refused:
            refusals.append(refused.message)
            continue
        except UpstreamUnavailable as unavailable:
            raise unavailable_error(unavailable) from None
        answers.append(profiles)
        next_after = more if lookup.kind == "all" else None
    found = [{**p, **_readable(p, "last_seen")} for p in unique_profiles(answers)]
    note = refusals[0] if refusals and not answers else None
    return page(
        "profiles.html", viewer=viewer, q=q, profiles=found, next_after=next_after, note=note
    )


@router.get("/profiles/{profile_id}")
async def profile_page(
    profile_id: ProfileIdPath, viewer: SignedIn, upstream: UpstreamDep
) -> Response:
    try:
        profile = await upstream.profiles.get(profile_id)
    except UpstreamMoved as moved:
        return _to_survivor(moved, profile_id)
    except UpstreamRefused as refused:
        raise ApiError(refused.status, refused.code, refused.message, "profile_id") from None
    except UpstreamUnavailable as unavailable:
        raise unavailable_error(unavailable) from None
    notes: list[str] = []
    events, messages, runs, attribution, segments = await asyncio.gather(
        part_of_page(upstream.profiles.events(profile_id, _TIMELINE_PART), [], "behaviour", notes),
        part_of_page(upstream.dispatch.messages(profile_id, _TIMELINE_PART), [], "messages", notes),
        part_of_page(upstream.journeys.runs(profile_id, _RUNS), [], "journeys", notes),
        part_of_page(
            upstream.attribution.touches(profile_id, _TIMELINE_PART),
            {"touches": [], "conversions": []},
            "outcomes and credits",
            notes,
        ),
        part_of_page(upstream.segments.list(), [], "segment names", notes),
    )
    names = {segment["id"]: segment["name"] for segment in segments}
    return page(
        "profile.html",
        viewer=viewer,
        profile={**profile, **_readable(profile, "first_seen", "last_seen")},
        segments=[
            {"id": segment_id, "name": names.get(segment_id), "version": version}
            for segment_id, version in sorted(profile["segments"].items())
        ],
        runs=[{**run, **_readable(run, "entered_at")} for run in runs],
        entries=timeline(events, messages, attribution["touches"], attribution["conversions"]),
        notes=notes,
    )


async def _looked_up(
    profiles: ProfileApi, lookup: Lookup, after: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """The profiles one lookup finds, and the cursor of its next page."""
    if lookup.kind == "profile":
        try:
            return [await profiles.get(lookup.text)], None
        except UpstreamMoved as moved:
            survivor = _SURVIVOR.search(moved.location)
            if survivor is None:
                return [], None
            return [await profiles.get(survivor.group(1))], None
        except UpstreamRefused as refused:
            if refused.status == 404:
                return [], None
            raise
    if lookup.kind == "identifier":
        answer = await profiles.find(identifier=lookup.text)
    elif lookup.kind == "trait":
        answer = await profiles.find(trait=lookup.text)
    else:
        answer = await profiles.find(after=after)
    return list(answer["profiles"]), answer.get("next_after")


def _readable(item: dict[str, Any], *keys: str) -> dict[str, str | None]:
    """The item's times as people read them (`2026-12-01 09:30 UTC`), to the minute."""
    return {key: readable_time(item.get(key)) for key in keys}


def _to_survivor(moved: UpstreamMoved, profile_id: str) -> Response:
    survivor = _SURVIVOR.search(moved.location)
    if survivor is None:
        raise ApiError(502, "upstream_unavailable", f"{profile_id} moved somewhere unknown.")
    return RedirectResponse(f"/profiles/{survivor.group(1)}", status_code=303)

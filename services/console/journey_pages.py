"""The journey screens: the list with each journey's counts, and the canvas (new and existing)
that draws, validates, saves, publishes and pauses a journey and shows its live node stats.

The journey service keeps the graph and judges it; the console keeps where the canvas draws each
node (decision 0028). Every change goes to the journey service server-side, then into the audit
log with the journey as it was before and after.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Final, Literal, TypeVar

from fastapi import APIRouter, Path
from fastapi.responses import HTMLResponse

from services.console.access import Editor, Posting, SignedIn, Stores
from services.console.accounts import Viewer
from services.console.managed_service import UpstreamRefused
from services.console.pages import page
from services.console.schemas import JOURNEY_ID_PATTERN, JourneyCheck, JourneyDraft
from services.console.upstream import Upstream, UpstreamDep, answered

_T = TypeVar("_T")
router = APIRouter(include_in_schema=False)
JourneyIdPath = Annotated[str, Path(pattern=JOURNEY_ID_PATTERN)]
Action = Literal["publish", "pause", "resume"]
_AUDITED: Final[dict[str, str]] = {
    "publish": "journey.published",
    "pause": "journey.paused",
    "resume": "journey.resumed",
}
_NEW_JOURNEY: Final[dict[str, Any]] = {
    "entry": {"event": ""},
    "nodes": {},
}


@router.get("/journeys")
async def journeys_page(viewer: SignedIn, upstream: UpstreamDep) -> HTMLResponse:
    """Every journey with its status, version and how many entered, are in it and completed."""
    journeys = await answered(upstream.journeys.list())
    totals = await asyncio.gather(
        *(_totals(upstream, journey["id"]) for journey in journeys),
    )
    rows = [{**journey, "totals": total} for journey, total in zip(journeys, totals, strict=True)]
    return page("journeys.html", viewer=viewer, journeys=rows)


@router.get("/journeys/new")
async def new_journey_page(viewer: SignedIn) -> HTMLResponse:
    return _canvas(viewer, None, None)


@router.post("/journeys/validate")
async def validate_journey(
    check: JourneyCheck, viewer: Posting, upstream: UpstreamDep
) -> dict[str, Any]:
    """The journey service's verdict on the graph as it stands; nothing is saved. A wrong graph
    is the service's 422, its `field` naming the node (`nodes.<id>.<field>`)."""
    return await answered(upstream.journeys.validate(check.definition.graph()))


@router.post("/journeys", status_code=201)
async def create_journey(
    draft: JourneyDraft, viewer: Editor, stores: Stores, upstream: UpstreamDep
) -> dict[str, Any]:
    created = await answered(
        upstream.journeys.create(None, draft.name, draft.description, draft.definition.graph())
    )
    async with stores() as store:
        await store.keep_journey_layout(created["id"], draft.layout.model_dump())
        await store.record(viewer, "journey.created", created["id"], None, _definition(created))
    return _summary(created)


@router.get("/journeys/{journey_id}")
async def journey_page(
    journey_id: JourneyIdPath, viewer: SignedIn, stores: Stores, upstream: UpstreamDep
) -> HTMLResponse:
    journey = await answered(upstream.journeys.get(journey_id))
    async with stores() as store:
        layout = await store.journey_layout(journey_id)
    return _canvas(viewer, journey, layout)


@router.post("/journeys/{journey_id}")
async def change_journey(
    journey_id: JourneyIdPath,
    draft: JourneyDraft,
    viewer: Editor,
    stores: Stores,
    upstream: UpstreamDep,
) -> dict[str, Any]:
    """Replace the draft (published versions and their runs are untouched) and the layout."""
    before = await answered(upstream.journeys.get(journey_id))
    changed = await answered(
        upstream.journeys.replace(
            journey_id, draft.name, draft.description, draft.definition.graph()
        )
    )
    async with stores() as store:
        await store.keep_journey_layout(journey_id, draft.layout.model_dump())
        await store.record(
            viewer, "journey.changed", journey_id, _definition(before), _definition(changed)
        )
    return _summary(changed)


@router.post("/journeys/{journey_id}/{action}")
async def act_on_journey(
    journey_id: JourneyIdPath,
    action: Action,
    viewer: Editor,
    stores: Stores,
    upstream: UpstreamDep,
) -> dict[str, Any]:
    """Publish the draft as the next version, pause the journey, or resume it."""
    before = await answered(upstream.journeys.get(journey_id))
    after = await answered(upstream.journeys.act(journey_id, action))
    async with stores() as store:
        await store.record(
            viewer, _AUDITED[action], journey_id, _definition(before), _definition(after)
        )
    return _summary(after)


@router.get("/journeys/{journey_id}/stats")
async def journey_stats(
    journey_id: JourneyIdPath, viewer: SignedIn, upstream: UpstreamDep
) -> dict[str, Any]:
    """The journey service's counts, per node and in total, for the canvas to show."""
    return await answered(upstream.journeys.stats(journey_id))


async def _totals(upstream: Upstream, journey_id: str) -> dict[str, Any] | None:
    """A journey's totals; None when the service has none to give (deleted meanwhile)."""
    try:
        stats = await upstream.journeys.stats(journey_id)
    except UpstreamRefused:
        return None
    return dict(stats["total"])


def _canvas(viewer: Viewer, journey: dict[str, Any] | None, layout: Any) -> HTMLResponse:
    state = {
        "journey": None if journey is None else _summary(journey),
        "definition": _NEW_JOURNEY if journey is None else journey["draft"],
        "layout": layout,
        "can_edit": viewer.can_edit,
    }
    return page("journey_canvas.html", viewer=viewer, journey=journey, state=state)


def _summary(journey: dict[str, Any]) -> dict[str, Any]:
    """What the canvas shows of a journey besides its graph."""
    keys = ("id", "name", "description", "status", "published_version", "updated_at")
    return {key: journey.get(key) for key in keys}


def _definition(journey: dict[str, Any]) -> dict[str, Any]:
    """What the audit log keeps of a journey: what a person chose, not its runs."""
    keys = ("id", "name", "description", "status", "published_version", "draft")
    return {key: journey[key] for key in keys if key in journey}

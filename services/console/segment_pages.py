"""The segment screens: the list, the builder (new and existing), and the live preview.

Every change goes to the segment service's management API server-side, and into the audit log
with the segment as it was before and after.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from libs.common.errors import ApiError
from services.console.access import Editor, Posting, SignedIn, Stores, form_fields
from services.console.accounts import Viewer
from services.console.pages import page
from services.console.schemas import (
    PREVIEW_SAMPLE_SIZE,
    SEGMENT_ID_PATTERN,
    PreviewAnswer,
    PreviewRequest,
    SegmentForm,
)
from services.console.upstream import UpstreamDep, answered

_T = TypeVar("_T")
router = APIRouter(include_in_schema=False)
SegmentIdPath = Annotated[str, Path(pattern=SEGMENT_ID_PATTERN)]
_EMPTY_RULE: dict[str, Any] = {"all": []}


@router.get("/segments")
async def segments_page(viewer: SignedIn, upstream: UpstreamDep) -> HTMLResponse:
    segments = await answered(upstream.segments.list())
    return page("segments.html", viewer=viewer, segments=segments)


@router.get("/segments/new")
async def new_segment_page(viewer: SignedIn) -> HTMLResponse:
    return _builder(viewer, None, SegmentForm("", "", ""), _EMPTY_RULE)


@router.post("/segments/preview")
async def preview_segment(
    preview: PreviewRequest, viewer: Posting, upstream: UpstreamDep
) -> PreviewAnswer:
    """How many profiles the rule matches now and some of them; nothing is saved."""
    answer = await answered(upstream.segments.preview(preview.conditions, PREVIEW_SAMPLE_SIZE))
    return PreviewAnswer.model_validate(answer)


@router.post("/segments")
async def create_segment(
    request: Request, viewer: Editor, stores: Stores, upstream: UpstreamDep
) -> Response:
    form = SegmentForm.of(await form_fields(request))
    try:
        name, description, conditions = form.checked()
        created = await answered(upstream.segments.create(name, description, conditions))
    except ApiError as refused:
        return _builder(viewer, None, form, _rule_of(form), refused)
    after = _definition(created)
    async with stores() as store:
        await store.record(viewer, "segment.created", created["id"], None, after)
    return RedirectResponse(f"/segments/{created['id']}", status_code=303)


@router.get("/segments/{segment_id}")
async def segment_page(
    segment_id: SegmentIdPath, viewer: SignedIn, upstream: UpstreamDep
) -> HTMLResponse:
    segment = await answered(upstream.segments.get(segment_id))
    form = SegmentForm(segment["name"], segment["description"], "")
    return _builder(viewer, segment, form, segment["conditions"])


@router.post("/segments/{segment_id}")
async def change_segment(
    segment_id: SegmentIdPath,
    request: Request,
    viewer: Editor,
    stores: Stores,
    upstream: UpstreamDep,
) -> Response:
    form = SegmentForm.of(await form_fields(request))
    before = await answered(upstream.segments.get(segment_id))
    try:
        name, description, conditions = form.checked()
        changed = await answered(
            upstream.segments.replace(segment_id, name, description, conditions)
        )
    except ApiError as refused:
        return _builder(viewer, before, form, _rule_of(form), refused)
    async with stores() as store:
        await store.record(
            viewer, "segment.changed", segment_id, _definition(before), _definition(changed)
        )
    return RedirectResponse(f"/segments/{segment_id}", status_code=303)


@router.post("/segments/{segment_id}/delete")
async def delete_segment(
    segment_id: SegmentIdPath, viewer: Editor, stores: Stores, upstream: UpstreamDep
) -> Response:
    before = await answered(upstream.segments.get(segment_id))
    await answered(upstream.segments.delete(segment_id))
    async with stores() as store:
        await store.record(viewer, "segment.deleted", segment_id, _definition(before), None)
    return RedirectResponse("/segments", status_code=303)


def _builder(
    viewer: Viewer,
    segment: dict[str, Any] | None,
    form: SegmentForm,
    rule: Any,
    refused: ApiError | None = None,
) -> HTMLResponse:
    error = None
    if refused is not None:
        error = {"field": refused.field, "message": refused.message}
    return page(
        "segment_builder.html",
        status_code=200 if refused is None else refused.status_code,
        viewer=viewer,
        segment=segment,
        form=form,
        rule=rule,
        error=error,
    )


def _rule_of(form: SegmentForm) -> Any:
    """The rule the form sent, to show again; the empty rule when it is not JSON."""
    try:
        return json.loads(form.conditions_json)
    except ValueError:
        return _EMPTY_RULE


def _definition(segment: dict[str, Any]) -> dict[str, Any]:
    """What the audit log keeps of a segment: what a person chose, not the service's counts."""
    keys = ("id", "name", "description", "version", "conditions")
    return {key: segment[key] for key in keys if key in segment}

"""The template screens: the list, and the editor (Liquid sources with their variants side by
side, a preview for a person, the bandit's split and each variant's rates, copy suggestions).

Every change goes to the content service's management API server-side (each save its next
version), and into the audit log with the template as it was before and after.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from libs.common.errors import ApiError
from services.console.access import Editor, Posting, SignedIn, Stores, form_fields
from services.console.accounts import Viewer
from services.console.managed_service import UpstreamRefused, UpstreamUnavailable
from services.console.pages import SECURITY_HEADERS, page
from services.console.sources import ProfileApi
from services.console.template_drafts import (
    CHANNEL_FIELDS,
    FIELD_LABELS,
    JSON_FIELDS,
    REQUIRED_FIELDS,
    REWARDS,
    TemplateDraft,
    definition,
)
from services.console.template_previews import (
    facts_of,
    profile_query,
    sms_length,
    split_bars,
    variant_standings,
)
from services.console.template_schemas import (
    TEMPLATE_ID_PATTERN,
    SmsLengthAnswer,
    SuggestionAnswer,
    SuggestionRequest,
    TemplatePreviewAnswer,
    TemplatePreviewRequest,
)
from services.console.upstream import UpstreamDep, answered, unavailable_error

router = APIRouter(include_in_schema=False)
TemplateIdPath = Annotated[str, Path(pattern=TEMPLATE_ID_PATTERN)]
ChannelQuery = Annotated[str, Query(pattern="^(" + "|".join(CHANNEL_FIELDS) + ")$")]

# The editor's page shows the email preview in a sandboxed iframe (`srcdoc`), which inherits the
# page's policy: the email's own inline styles and its images on the web are allowed there, so
# that the preview looks as the email will. Scripts stay the console's own only, and the
# sandbox runs none in the preview at all.
EDITOR_HEADERS: Final = {
    **SECURITY_HEADERS,
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: https:; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
}


@router.get("/templates")
async def templates_page(viewer: SignedIn, upstream: UpstreamDep) -> HTMLResponse:
    templates = await answered(upstream.templates.list())
    return page(
        "template_list.html", viewer=viewer, templates=templates, channels=list(CHANNEL_FIELDS)
    )


@router.get("/templates/new")
async def new_template_page(viewer: SignedIn, channel: ChannelQuery = "email") -> HTMLResponse:
    return _editor(viewer, None, TemplateDraft.blank(channel))


@router.post("/templates")
async def create_template(
    request: Request, viewer: Editor, stores: Stores, upstream: UpstreamDep
) -> Response:
    fields = await form_fields(request)
    channel = fields.get("channel", "")
    draft = TemplateDraft.of_form(fields, template_id=fields.get("id", "").strip(), channel=channel)
    try:
        created = await answered(upstream.templates.create(draft.body()))
    except ApiError as refused:
        return _editor(viewer, None, draft, refused=refused)
    async with stores() as store:
        await store.record(viewer, "template.created", created["id"], None, definition(created))
    return RedirectResponse(f"/templates/{created['id']}", status_code=303)


@router.post("/copy/suggestions")
async def suggest_copy(
    asked: SuggestionRequest, viewer: Editor, upstream: UpstreamDep
) -> SuggestionAnswer:
    """Copy for a brief from the content service (its model, or the best variants recombined);
    nothing is saved."""
    answer = await answered(upstream.templates.suggestions(asked.channel, asked.brief, asked.count))
    return SuggestionAnswer.model_validate(answer)


@router.get("/templates/{template_id}")
async def template_page(
    template_id: TemplateIdPath, viewer: SignedIn, upstream: UpstreamDep
) -> HTMLResponse:
    templates = upstream.templates
    template = await answered(templates.get(template_id))
    standing = await answered(templates.variants(template_id))
    return _editor(viewer, template, TemplateDraft.of_template(template), standing)


@router.post("/templates/{template_id}")
async def change_template(
    template_id: TemplateIdPath,
    request: Request,
    viewer: Editor,
    stores: Stores,
    upstream: UpstreamDep,
) -> Response:
    templates = upstream.templates
    before = await answered(templates.get(template_id))
    fields = await form_fields(request)
    draft = TemplateDraft.of_form(fields, template_id=template_id, channel=before["channel"])
    try:
        changed = await answered(templates.replace(template_id, draft.body()))
    except ApiError as refused:
        standing = await answered(templates.variants(template_id))
        return _editor(viewer, before, draft, standing, refused)
    async with stores() as store:
        await store.record(
            viewer, "template.changed", template_id, definition(before), definition(changed)
        )
    return RedirectResponse(f"/templates/{template_id}", status_code=303)


@router.post("/templates/{template_id}/delete")
async def delete_template(
    template_id: TemplateIdPath, viewer: Editor, stores: Stores, upstream: UpstreamDep
) -> Response:
    templates = upstream.templates
    before = await answered(templates.get(template_id))
    await answered(templates.delete(template_id))
    async with stores() as store:
        await store.record(viewer, "template.deleted", template_id, definition(before), None)
    return RedirectResponse("/templates", status_code=303)


@router.post("/templates/{template_id}/preview")
async def preview_template(
    template_id: TemplateIdPath,
    asked: TemplatePreviewRequest,
    viewer: Posting,
    upstream: UpstreamDep,
) -> TemplatePreviewAnswer:
    """The saved template's variant rendered for the person's facts, as a send would render it
    (without tracking links); nothing is saved or sent."""
    templates = upstream.templates
    template = await answered(templates.get(template_id))
    profile = await _person(upstream.profiles, asked.profile)
    try:
        rendered = await templates.preview(
            template_id, facts_of(profile), asked.variant_id, asked.variables
        )
    except UpstreamRefused as refused:
        raise _preview_refusal(refused) from None
    except UpstreamUnavailable as unavailable:
        raise unavailable_error(unavailable) from None
    sms = None
    if template["channel"] == "sms":
        length = sms_length(str(rendered["fields"].get("text", "")))
        sms = SmsLengthAnswer.model_validate(length, from_attributes=True)
    return TemplatePreviewAnswer(
        template_id=rendered["template_id"],
        template_version=rendered["template_version"],
        variant_id=rendered["variant_id"],
        channel=template["channel"],
        profile_id=profile["id"],
        fields=rendered["fields"],
        sms=sms,
    )


async def _person(profiles: ProfileApi, who: str) -> dict[str, Any]:
    """The profile `who` names; 404 or 422 naming the `profile` field when there is none."""
    query = profile_query(who)
    try:
        if query.profile_id is not None:
            return await profiles.get(query.profile_id)
        assert query.identifier is not None
        found = await profiles.by_identifier(query.identifier)
    except UpstreamRefused as refused:
        if refused.status == 404:
            raise _no_profile(who) from None
        raise ApiError(refused.status, refused.code, refused.message, "profile") from None
    except UpstreamUnavailable as unavailable:
        raise unavailable_error(unavailable) from None
    if found is None:
        raise _no_profile(who)
    return found


def _no_profile(who: str) -> ApiError:
    return ApiError(404, "profile_not_found", f"No profile is known as {who.strip()!r}.", "profile")


def _preview_refusal(refused: UpstreamRefused) -> ApiError:
    """Content's refusal of a preview, on the input it is about: a variable nobody defined is the
    variables' (or, under `profile.`, the person's); an unknown variant the variant's."""
    field = refused.field
    if refused.code == "missing_variable":
        field = "profile" if (field or "").startswith("profile.") else "variables"
    elif refused.code == "variant_not_found":
        field = "variant_id"
    return ApiError(refused.status, refused.code, refused.message, field)


def _editor(
    viewer: Viewer,
    template: dict[str, Any] | None,
    draft: TemplateDraft,
    standing: dict[str, Any] | None = None,
    refused: ApiError | None = None,
) -> HTMLResponse:
    error = None
    if refused is not None:
        error = {
            "field": refused.field,
            "input": draft.input_for(refused.field),
            "message": refused.message,
        }
    variants = variant_standings(standing) if standing is not None else []
    response = page(
        "template_editor.html",
        status_code=200 if refused is None else refused.status_code,
        viewer=viewer,
        stored=template,
        draft=draft,
        error=error,
        standing=standing,
        variants=variants,
        bars=split_bars([(v.variant_id, v.split) for v in variants if v.split is not None]),
        channels=list(CHANNEL_FIELDS),
        labels=FIELD_LABELS,
        required=REQUIRED_FIELDS.get(draft.channel, frozenset()),
        json_fields=JSON_FIELDS,
        rewards=REWARDS,
        preview_variables=_preview_variables(draft),
    )
    response.headers.update(EDITOR_HEADERS)
    return response


def _preview_variables(draft: TemplateDraft) -> str:
    """The variables a preview starts with: the template's defaults outside `profile`, which a
    send would fall back on (a preview is strict and has no fallback)."""
    try:
        defaults = json.loads(draft.defaults or "{}")
    except ValueError:
        return "{}"
    if not isinstance(defaults, dict):
        return "{}"
    variables: dict[str, Any] = {}
    for path, value in defaults.items():
        if path.startswith("profile.") or path in ("journey", "unsubscribe_url"):
            continue
        *parents, name = path.split(".")
        into = variables
        for parent in parents:
            into = into.setdefault(parent, {})
            if not isinstance(into, dict):
                break
        else:
            into[name] = value
    return json.dumps(variables, indent=1, ensure_ascii=False)

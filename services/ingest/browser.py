"""What the browser SDKs need besides the tracking API: CORS on `/v1`, and the settings they
would otherwise fetch from their vendor (Segment's CDN for analytics-next, RudderStack's control
plane for its JavaScript SDK)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from libs.common.errors import ApiError, error_responses
from services.ingest.gateway import IngestDep, source_for_key
from services.ingest.sources import basic_auth_username

router = APIRouter(prefix="/v1", tags=["browser"])

_TRACKING_PREFIX = "/v1/"
# analytics-next sends `Content-Type: text/plain` so that it needs no preflight; other browser
# clients send JSON, or the write key as Basic auth, and those need one. RudderStack's
# JavaScript SDK also sends the call's anonymous id and send time, and on a retry how it went so
# far, as headers of its own (which ingest reads from the body instead, or not at all).
_PREFLIGHT_HEADERS = (
    "Authorization",
    "Content-Type",
    "AnonymousId",
    "SentAt",
    "Rsa-Retry-Attempt",
    "Rsa-Retry-Reason",
    "Rsa-Since-First-Attempt",
    "Rsa-Since-Last-Attempt",
)
# Browsers cap this themselves (Chrome at 2 hours); 10 minutes spares a preflight per call.
_PREFLIGHT_MAX_AGE_SECONDS = 600


class TrackingCors:
    """CORS for the `/v1` routes only. The management routes take the admin token, which no web
    page should hold, so no origin may call them from a browser whatever the setting says."""

    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        self._app = app
        self._cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=("GET", "POST"),
            allow_headers=_PREFLIGHT_HEADERS,
            max_age=_PREFLIGHT_MAX_AGE_SECONDS,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(_TRACKING_PREFIX):
            await self._cors(scope, receive, send)
        else:
            await self._app(scope, receive, send)


def tracking_endpoint(base_url: str) -> tuple[str, str]:
    """`(protocol, apiHost)` as analytics-next's `Segment.io` settings name the tracking API
    under `base_url`: it posts to `{protocol}://{apiHost}/t`."""
    parts = urlsplit(base_url)
    return parts.scheme, f"{parts.netloc}{parts.path.rstrip('/')}/v1"


def settings_document(write_key: str, protocol: str, api_host: str) -> dict[str, Any]:
    """What Segment's CDN answers at `/v1/projects/{writeKey}/settings`, with the `Segment.io`
    destination pointed at ingest and no other destination loaded in the page."""
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": api_host,
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "enabledMiddleware": {},
        "middlewareSettings": {},
        # The SDK reports its own telemetry to Segment unless told not to: pages tracking into
        # Closeloop should send nothing to a third party.
        "metrics": {"sampleRate": 0},
        "remotePlugins": [],
    }


@router.get(
    "/projects/{write_key}/settings",
    responses=error_responses(404),
    response_model=dict[str, Any],
)
async def sdk_settings(write_key: str, request: Request, ingest: IngestDep) -> dict[str, Any]:
    """The settings analytics-next loads when its `cdnURL` is ingest: they send its calls here.

    The host is `CLOSELOOP_INGEST_PUBLIC_URL`'s, else the one this request came to.
    """
    source = await source_for_key(ingest, write_key)
    if source is None or not source.enabled:
        raise ApiError(404, "source_not_found", "No enabled source has this write key.", "writeKey")
    public_url = ingest.settings.ingest_public_url
    protocol, api_host = tracking_endpoint(str(public_url or request.base_url))
    return settings_document(write_key, protocol, api_host)


def source_config_document(source_id: str, name: str) -> dict[str, Any]:
    """What RudderStack's control plane answers at `/sourceConfig`: the source, enabled, with no
    device-mode destination for the SDK to load into the page."""
    return {
        "isHosted": False,
        "source": {
            "id": source_id,
            "name": name,
            "enabled": True,
            "workspaceId": "closeloop",
            "config": {},
            "destinations": [],
        },
    }


@router.get(
    "/sourceConfig",
    responses=error_responses(404),
    response_model=dict[str, Any],
)
@router.get("/sourceConfig/", include_in_schema=False)
async def rudderstack_source_config(
    request: Request, ingest: IngestDep, writeKey: str | None = None
) -> dict[str, Any]:
    """The source config RudderStack's JavaScript SDK loads when its `configUrl` is ingest's
    `/v1`; the write key as the Basic username (as the SDK sends it) or `writeKey`."""
    key = basic_auth_username(request.headers.get("authorization")) or writeKey
    source = await source_for_key(ingest, key) if key else None
    if source is None or not source.enabled:
        raise ApiError(404, "source_not_found", "No enabled source has this write key.", "writeKey")
    return source_config_document(source.id, source.name)

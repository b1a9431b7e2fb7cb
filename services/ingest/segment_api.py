"""Segment's HTTP Tracking API, so Segment and RudderStack SDKs send here unchanged."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from libs.common.errors import ApiError
from services.ingest.calls import CALL_MODELS, CallRejected, Receipt, accept_batch, to_event
from services.ingest.gateway import (
    Ingest,
    IngestDep,
    authenticate,
    parse_json,
    publish,
    read_body,
)
from services.ingest.schemas import BatchAccepted, CallAccepted, RejectedCall

router = APIRouter(prefix="/v1", tags=["tracking"])


def _call_route(kind: str) -> Callable[[Request, Ingest], Awaitable[CallAccepted]]:
    async def accept_call(request: Request, ingest: IngestDep) -> CallAccepted:
        settings = ingest.settings
        call = parse_json(await read_body(request, settings.ingest_max_event_bytes, "The call"))
        source = await authenticate(request, ingest, call)
        try:
            event = to_event(kind, call, Receipt(source.id, datetime.now(UTC)))
        except CallRejected as rejected:
            raise ApiError(400, "invalid_call", rejected.reason, rejected.field) from None
        await publish(ingest, [event])
        return CallAccepted()

    accept_call.__name__ = f"accept_{kind}"
    accept_call.__doc__ = f"A Segment `{kind}` call, published once Kafka acknowledges it."
    return accept_call


for _kind in CALL_MODELS:
    router.add_api_route(f"/{_kind}", _call_route(_kind), methods=["POST"])


@router.post("/batch", responses={400: {}, 401: {}, 413: {}, 503: {}})
async def accept_batch_of_calls(request: Request, ingest: IngestDep) -> Any:
    """Many calls at once; each is accepted or rejected on its own, and the answer says which.

    Only when every call is rejected is the answer a 400, since a retry could not help.
    """
    settings = ingest.settings
    payload = parse_json(await read_body(request, settings.ingest_max_batch_bytes, "The batch"))
    source = await authenticate(request, ingest, payload)
    calls = payload.get("batch") if isinstance(payload, dict) else None
    if not isinstance(calls, list):
        raise ApiError(400, "invalid_batch", "A batch is an object with a `batch` list.", "batch")
    receipt = Receipt(
        source.id,
        datetime.now(UTC),
        sent_at=payload.get("sentAt"),
        context=payload.get("context"),
        integrations=payload.get("integrations"),
    )
    events, rejections = accept_batch(calls, receipt, settings.ingest_max_event_bytes)
    rejected = [RejectedCall.of(rejection).model_dump() for rejection in rejections]
    if rejections and not events:
        first = rejections[0]
        field = f"batch.{first.index}" + (f".{first.field}" if first.field else "")
        error = {
            "code": "invalid_call",
            "message": f"Every call was rejected; the first: {first.reason}",
            "field": field,
        }
        return JSONResponse({"error": error, "rejected": rejected}, status_code=400)
    await publish(ingest, events)
    return BatchAccepted(accepted=len(events), rejected=rejected)

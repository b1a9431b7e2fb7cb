"""Segment's HTTP Tracking API, so Segment and RudderStack SDKs send here unchanged."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from libs.common.errors import ApiError, error_responses
from libs.common.tracing import current_traceparent
from services.ingest.calls import CALL_MODELS, CallRejected, Receipt, accept_batch, to_message
from services.ingest.gateway import (
    WRITE_KEY_SECURITY,
    IngestDep,
    authenticate,
    ingest_of,
    parse_json,
    publish,
    read_body,
)
from services.ingest.schemas import BatchAccepted, BatchRejected, CallAccepted, RejectedCall

router = APIRouter(prefix="/v1", tags=["tracking"])
# 400 a call that is not one, 401 no or a wrong write key, 413 too large, 415 neither plain nor
# gzip, 503 Kafka did not acknowledge (retry).
_CALL_ERRORS = error_responses(400, 401, 413, 415, 503)
# Set by ingest whatever the client sends; `messageId` and `timestamp` default when left out.
_ASSIGNED = frozenset({"sourceId", "receivedAt"})
_DEFAULTED = frozenset({"messageId", "timestamp"})


def _call_body(kind: str) -> dict[str, Any]:
    """The OpenAPI request body of a `kind` call: its event's fields less those ingest sets.

    The route reads the raw body (size limits, gzip), so FastAPI cannot derive it.
    """
    schema = CALL_MODELS[kind].model_json_schema(by_alias=True)
    properties = {k: v for k, v in schema["properties"].items() if k not in _ASSIGNED}
    required = [k for k in schema.get("required", []) if k not in _ASSIGNED | _DEFAULTED]
    body = {"type": "object", "properties": properties, "required": required}
    content = {"application/json": {"schema": body}}
    return {"requestBody": {"required": True, "content": content}, **WRITE_KEY_SECURITY}


_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "batch": {"type": "array", "items": {"type": "object"}},
                        "sentAt": {"type": "string", "format": "date-time"},
                        "context": {"type": "object"},
                        "integrations": {"type": "object"},
                    },
                    "required": ["batch"],
                }
            }
        },
    }
}


# The answer to every accepted call, made once: the route returns it as it is, so FastAPI has
# no response model to validate and serialise per call (the model documents it in OpenAPI).
_ACCEPTED = Response(CallAccepted().model_dump_json().encode(), media_type="application/json")


class _DirectRoute(APIRoute):
    """A route whose endpoint reads the request and returns the response itself. FastAPI still
    routes the call, documents it in OpenAPI and answers its exceptions through the app's
    handlers, but solves no dependencies and builds no response for it. With the answer made
    once (`_ACCEPTED`), a single call went from 490-500 to 406 µs of ingest's CPU
    (`python -m bench.ingest`, alternating runs)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint

        async def handle(request: Request) -> Response:
            response: Response = await endpoint(request)
            return response

        return handle


def _call_route(kind: str) -> Callable[[Request], Awaitable[Response]]:
    async def accept_call(request: Request) -> Response:
        ingest = ingest_of(request)
        settings = ingest.settings
        call = parse_json(await read_body(request, settings.ingest_max_event_bytes, "The call"))
        source = await authenticate(request, ingest, call)
        try:
            message = to_message(kind, call, _receipt(source.id))
        except CallRejected as rejected:
            raise ApiError(400, "invalid_call", rejected.reason, rejected.field) from None
        await publish(ingest, [message])
        return _ACCEPTED

    accept_call.__name__ = f"accept_{kind}"
    accept_call.__doc__ = f"A Segment `{kind}` call, published once Kafka acknowledges it."
    return accept_call


for _kind in CALL_MODELS:
    router.add_api_route(
        f"/{_kind}",
        _call_route(_kind),
        methods=["POST"],
        response_model=CallAccepted,
        responses=_CALL_ERRORS,
        route_class_override=_DirectRoute,
        openapi_extra=_call_body(_kind),
    )
    # analytics-next posts each call to its type's first letter (`/v1/t`), and batches to
    # `/v1/b`. Left out of OpenAPI: the same operations under other names.
    router.add_api_route(
        f"/{_kind[0]}",
        _call_route(_kind),
        methods=["POST"],
        route_class_override=_DirectRoute,
        include_in_schema=False,
    )


@router.post(
    "/batch",
    responses={
        **_CALL_ERRORS,
        400: {"model": BatchRejected, "description": "Every call rejected."},
    },
    openapi_extra={**_BATCH_BODY, **WRITE_KEY_SECURITY},
)
@router.post("/b", include_in_schema=False)
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
    receipt = _receipt(
        source.id,
        sent_at=payload.get("sentAt"),
        context=payload.get("context"),
        integrations=payload.get("integrations"),
    )
    messages, rejections = accept_batch(calls, receipt, settings.ingest_max_event_bytes)
    rejected = [RejectedCall.of(rejection).model_dump() for rejection in rejections]
    if rejections and not messages:
        first = rejections[0]
        field = f"batch.{first.index}" + (f".{first.field}" if first.field else "")
        error = {
            "code": "invalid_call",
            "message": f"Every call was rejected; the first: {first.reason}",
            "field": field,
        }
        return JSONResponse({"error": error, "rejected": rejected}, status_code=400)
    await publish(ingest, messages)
    return BatchAccepted(accepted=len(messages), rejected=rejected)


def _receipt(
    source_id: str, *, sent_at: object = None, context: object = None, integrations: object = None
) -> Receipt:
    """How this request arrived: now, from the source, in the request's trace if traced."""
    now = datetime.now(UTC)
    traceparent = current_traceparent()
    return Receipt(source_id, now, sent_at, context, integrations, traceparent)

"""A local OTLP/HTTP receiver: what the services export to `OTEL_EXPORTER_OTLP_ENDPOINT`, kept
as spans to look at. It takes `POST /v1/traces` in protobuf, as the SDK's exporter sends it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from libs.devstack import free_port
from libs.devstack._process import LOOPBACK

_PROTOBUF = "application/x-protobuf"


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a trace's root
    name: str
    kind: str  # SERVER, CONSUMER, CLIENT...
    attributes: dict[str, str]


@dataclass
class OtlpReceiver:
    endpoint: str
    spans: list[ReceivedSpan] = field(default_factory=list)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [span for span in self.spans if span.trace_id == trace_id]


@contextlib.asynccontextmanager
async def otlp_receiver() -> AsyncIterator[OtlpReceiver]:
    port = free_port()
    receiver = OtlpReceiver(endpoint=f"http://{LOOPBACK}:{port}")

    async def export(request: web.Request) -> web.Response:
        if request.content_type != _PROTOBUF:
            return web.Response(status=415, text=f"send {_PROTOBUF}")
        exported = ExportTraceServiceRequest.FromString(await request.read())
        receiver.spans.extend(_spans_of(exported))
        answer = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=answer, content_type=_PROTOBUF)

    app = web.Application()
    app.router.add_post("/v1/traces", export)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, port).start()
    try:
        yield receiver
    finally:
        await runner.cleanup()


def _spans_of(exported: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    spans = []
    for resource_spans in exported.resource_spans:
        resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        service=resource.get("service.name", ""),
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        name=span.name,
                        kind=span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                        attributes={a.key: str(a.value) for a in span.attributes},
                    )
                )
    return spans

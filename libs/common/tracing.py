"""Distributed tracing: an OpenTelemetry span for each HTTP request, for each trace a consumer's
batch carries, and for each provider call, joined into one trace per tracked behaviour by the
W3C `traceparent` each event carries (its CloudEvents extension).

Off unless the standard variables name an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`
keep it off even then. Off, nothing here is on any path: no middleware, no span objects, no
exporter thread. On, spans go over OTLP/HTTP (protobuf) in batches; the SDK reads the other
`OTEL_*` variables itself (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_HEADERS`...).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common.events import Event

_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_propagator = TraceContextTextMapPropagator()
# Set once per process by `start_tracing` when tracing is on; None means off.
_tracer: Tracer | None = None
_provider: Any = None
# What a batch carries when tracing is off: no trace continued.
_NO_TRACES: Mapping[str, str] = {}


def tracing_wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the `OTEL_*` variables ask for traces to be exported."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return any(environ.get(name, "").strip() for name in _ENDPOINT_VARIABLES)


def start_tracing(service_name: str) -> bool:
    """Export this process's spans over OTLP if the environment asks for it; whether it does.

    `service_name` names the process unless `OTEL_SERVICE_NAME` does. Called again, it keeps
    what the first call set up.
    """
    global _tracer, _provider
    if _tracer is not None:
        return True
    if not tracing_wanted():
        return False
    # Imported only when on: the SDK and the exporter cost a process that traces nothing.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _provider = provider
    _tracer = provider.get_tracer("closeloop")
    return True


def stop_tracing() -> None:
    """Export the spans still held, then stop exporting (at the process's shutdown)."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer, _provider = None, None


def tracing_on() -> bool:
    return _tracer is not None


def current_traceparent() -> str | None:
    """The `traceparent` of the span in progress, for the events it causes; None when off or
    outside any span."""
    if _tracer is None:
        return None
    return _traceparent_of(trace.get_current_span())


def current_trace_id() -> str | None:
    """The trace id of the span in progress, as 32 hex digits; None when off or outside any."""
    if _tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


class TracedRequests:
    """A server span for each HTTP request, continuing the caller's `traceparent` if it sent
    one, named by method and route template (the path only for an unmatched route)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _tracer is None:
            await self.app(scope, receive, send)
            return
        parent = _context_of(_header(scope, b"traceparent"), _header(scope, b"tracestate"))
        method = scope["method"]
        with _tracer.start_as_current_span(
            method, context=parent, kind=SpanKind.SERVER, record_exception=True
        ) as span:
            span.set_attribute("http.request.method", method)
            span.set_attribute("url.path", scope["path"])

            async def send_recording_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    _record_status(span, message["status"])
                await send(message)

            try:
                await self.app(scope, receive, send_recording_status)
            finally:
                route = getattr(scope.get("route"), "path_format", None)
                if route is not None:
                    span.set_attribute("http.route", route)
                span.update_name(f"{method} {route or scope['path']}")


@contextlib.contextmanager
def batch_spans(group: str, events: Sequence[Event[Any]]) -> Iterator[Mapping[str, str]]:
    """A consumer span for each trace among a batch's events (by their `traceparent`), open
    while the block handles the batch: each continues its trace, so one behaviour's trace
    shows every service it went through. Yields each incoming `traceparent`'s continuation,
    for the events the batch emits; nothing when tracing is off or no event carries one."""
    events_per_trace: dict[str, int] = {}
    if _tracer is not None:
        for event in events:
            if event.traceparent:
                events_per_trace[event.traceparent] = events_per_trace.get(event.traceparent, 0) + 1
    if _tracer is None or not events_per_trace:
        yield _NO_TRACES
        return
    spans = {
        traceparent: _tracer.start_span(
            f"{group} process",
            context=_context_of(traceparent),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.consumer.group.name": group,
                "messaging.batch.message_count": len(events),
                "closeloop.trace_events": count,
            },
        )
        for traceparent, count in events_per_trace.items()
    }
    try:
        yield {incoming: _traceparent_of(span) or incoming for incoming, span in spans.items()}
    except BaseException as error:
        for span in spans.values():
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        raise
    finally:
        for span in spans.values():
            span.end()


@contextlib.contextmanager
def provider_call(channel: str, traceparent: str | None) -> Iterator[Span | None]:
    """A client span around one call to a channel's provider, in the trace of the message it
    sends; None (and no span) when tracing is off."""
    if _tracer is None:
        yield None
        return
    with _tracer.start_as_current_span(
        f"{channel} send",
        context=_context_of(traceparent),
        kind=SpanKind.CLIENT,
        attributes={"closeloop.channel": channel},
    ) as span:
        yield span


def _context_of(traceparent: str | None, tracestate: str | None = None) -> Context | None:
    if not traceparent:
        return None
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    return _propagator.extract(carrier)


def _traceparent_of(span: Span) -> str | None:
    context = span.get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return bytes(value).decode("latin-1")
    return None


def _record_status(span: Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))

"""Tracing is on only when the OTEL_* variables name an OTLP endpoint, and off it adds nothing:
no middleware, no spans, events keep the trace context they came with."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.app import create_app
from libs.common.bus.batch import Batch
from libs.common.events import Event
from libs.common.events.behavior import BehaviorOccurred
from libs.common.settings import Settings
from libs.common.tracing import (
    TracedRequests,
    batch_spans,
    current_traceparent,
    tracing_on,
    tracing_wanted,
)

_UPSTREAM = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
_OURS = "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01"
_ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        (_ENDPOINT, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({**_ENDPOINT, "OTEL_SDK_DISABLED": "true"}, False),
        ({**_ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_SERVICE_NAME": "ingest"}, False),
    ],
)
def test_traces_are_exported_only_when_an_endpoint_is_named(
    environ: dict[str, str], wanted: bool
) -> None:
    assert tracing_wanted(environ) is wanted


def test_off_the_app_has_no_tracing_middleware() -> None:
    app = create_app(Settings(service_name="segment"), title="Segment")
    assert not tracing_on()
    names = [getattr(middleware.cls, "__name__", "") for middleware in app.user_middleware]
    assert "FailedRequestLog" in names and TracedRequests.__name__ not in names
    assert current_traceparent() is None


def test_off_a_batch_continues_no_trace_and_emits_the_cause_s_context() -> None:
    cause = _behaviour(traceparent=_UPSTREAM)
    with batch_spans("closeloop-segment", [cause]) as traces:
        assert traces == {}
        batch = Batch([cause], cast(AsyncSession, None), traces=traces)
        batch.emit(_behaviour(), cause=cause)
    assert batch.emitted[0].traceparent == _UPSTREAM


def test_an_emitted_event_continues_the_batch_s_span_in_its_cause_s_trace() -> None:
    cause = _behaviour(traceparent=_UPSTREAM)
    batch = Batch([cause], cast(AsyncSession, None), traces={_UPSTREAM: _OURS})
    batch.emit(_behaviour(), cause=cause)
    batch.emit(_behaviour(), cause=_behaviour())  # a cause in no trace
    assert [event.traceparent for event in batch.emitted] == [_OURS, None]


def _behaviour(traceparent: str | None = None) -> Event[Any]:
    now = datetime.now(UTC)
    data = BehaviorOccurred(
        profile_id="prf_1",
        event="note_written",
        kind="track",
        occurred_at=now,
        received_at=now,
        message_id="m-1",
    )
    return Event(data=data, key="prf_1", source="closeloop/tests", traceparent=traceparent)

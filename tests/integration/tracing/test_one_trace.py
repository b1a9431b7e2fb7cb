"""One tracked behaviour is one trace: an identify that puts a person in a segment whose journey
sends a webhook shows, in the spans the seven services export over OTLP, as one tree from
ingest's request to the call to the webhook's provider and the outcome's consumers."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.closed_loop.harness import ClosedLoop, now, unique
from tests.integration.closed_loop.services import webhook_journey
from tests.integration.support import wait_for
from tests.integration.tracing.otlp import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.integration

SERVICES = ("ingest", "profile", "segment", "journey", "content", "dispatch", "attribution")


async def test_a_behaviour_is_one_trace_from_ingest_to_the_provider(
    traced_loop: ClosedLoop, receiver: OtlpReceiver
) -> None:
    run = unique("traced")
    await webhook_journey(
        traced_loop, run, {"trait": "traced_run", "value": run}, {"hello": "{{ profile.id }}"}
    )
    response = await traced_loop.ingest.post(
        "/v1/identify",
        json={"userId": f"u_{run}", "traits": {"traced_run": run}, "timestamp": now()},
        auth=httpx.BasicAuth(traced_loop.write_key, ""),
    )
    assert response.status_code == 200, response.text
    trace_id = response.headers["x-trace-id"]

    def services_in_trace() -> set[str]:
        return {span.service.split("_")[0] for span in receiver.trace(trace_id)}

    async def crossed_every_service() -> bool:
        spans = receiver.trace(trace_id)
        return services_in_trace() >= set(SERVICES) and _provider_call(spans) is not None

    try:
        await wait_for(crossed_every_service, within=120, what=f"every service in {trace_id}")
    except AssertionError as missing:
        raise AssertionError(f"{missing}; the trace has spans of {services_in_trace()}") from None
    spans = receiver.trace(trace_id)
    roots = [span for span in spans if not span.parent_span_id]
    assert [(root.service.split("_")[0], root.name, root.kind) for root in roots] == [
        ("ingest", "POST /v1/identify", "SERVER")
    ]
    # One tree: every span's parent is a span of the same trace (exported by then or soon).
    await wait_for(
        lambda: _parents_known(receiver, trace_id), within=30, what="every parent span exported"
    )
    provider_call = _provider_call(receiver.trace(trace_id))
    assert provider_call is not None
    parent = next(s for s in receiver.trace(trace_id) if s.span_id == provider_call.parent_span_id)
    assert (parent.service.split("_")[0], parent.kind) == ("dispatch", "CONSUMER")


def _provider_call(spans: list[ReceivedSpan]) -> ReceivedSpan | None:
    return next(
        (s for s in spans if s.kind == "CLIENT" and s.name == "webhook send"),
        None,
    )


async def _parents_known(receiver: OtlpReceiver, trace_id: str) -> bool:
    spans = receiver.trace(trace_id)
    ids = {span.span_id for span in spans}
    return all(span.parent_span_id in ids for span in spans if span.parent_span_id)

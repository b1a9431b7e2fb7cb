"""SIGKILL the journey process while timers are pending: after a restart each fires once."""

from __future__ import annotations

from collections import defaultdict

import pytest

from libs.devstack._process import free_port
from libs.devstack.pytest_plugin import ServiceLauncher
from libs.devstack.stack import Stack
from tests.events import behaviour
from tests.integration.journey.harness import JourneyHarness, Requested, send, unique
from tests.integration.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

PROFILES = 20


async def test_every_pending_timer_fires_exactly_once_after_a_crash(
    stack: Stack, service_process: ServiceLauncher
) -> None:
    process = await service_process(
        "services.journey",
        name=f"journey_crash_{unique('r')[-8:]}",
        migrate=True,
        env={
            "CLOSELOOP_JOURNEY_SEGMENT_URL": f"http://127.0.0.1:{free_port()}",
            "CLOSELOOP_JOURNEY_CONTENT_URL": "",
            "CLOSELOOP_JOURNEY_TIMER_POLL_INTERVAL_MS": "100",
            "CLOSELOOP_KAFKA_SESSION_TIMEOUT_MS": "6000",
        },
        ready_timeout=60,
    )
    service = JourneyHarness(stack, process)
    try:
        await _check_unreachable_segment_service_is_a_503(service)
        journey, event = unique("jrn_crash"), unique("browsed")
        await service.create_and_publish(
            journey,
            {
                "entry": {"event": event, "where": [{"property": "sku", "op": "exists"}]},
                "start": "hello",
                "nodes": {
                    "hello": send("hello", "tpl_hello", "pause"),
                    "pause": {"type": "wait", "duration": "PT6S", "next": "reminder"},
                    "reminder": send("reminder", "tpl_reminder"),
                },
            },
        )
        profiles = [unique("prf_crash") for _ in range(PROFILES)]
        await service.publish(
            *(behaviour(p, event, properties={"sku": "oolong"}) for p in profiles)
        )
        await service.publish(behaviour(unique("prf_nosku"), event))

        async def all_waiting() -> bool:
            stats = await service.stats(journey)
            return bool(stats["total"]["in_progress"] == PROFILES)

        await wait_for(all_waiting, within=90, what="every profile waiting at the timer")
        await process.kill()
        process.start()
        await process.wait_ready(60)

        async def all_reminded() -> bool:
            return len(_by_key(await service.requested(journey))) == 2 * PROFILES

        await wait_for(all_reminded, within=90, what="every reminder after the restart")
        by_key = _by_key(await service.requested(journey))
        assert set(by_key) == {
            f"{journey}:v1:{node}:{p}:1" for p in profiles for node in ("hello", "reminder")
        }
        # The outbox may publish an event again after a crash (same ce_id, skipped by every
        # inbox); a timer firing twice would make a second event.
        assert all(len(ids) == 1 for ids in by_key.values()), by_key
        stats = await service.stats(journey)
        assert stats["nodes"]["pause"]["completed"] == PROFILES
        assert stats["total"]["entered"] == PROFILES
    finally:
        await service.aclose()


def _by_key(requests: list[Requested]) -> dict[str, set[str]]:
    by_key: dict[str, set[str]] = defaultdict(set)
    for request in requests:
        by_key[request.data.idempotency_key].add(request.event_id)
    return by_key


async def _check_unreachable_segment_service_is_a_503(service: JourneyHarness) -> None:
    response = await service.create(
        unique("jrn_down"),
        {"entry": {"segment": "seg_any"}, "start": "a", "nodes": {"a": send("a", "tpl")}},
    )
    assert response.status_code == 503, response.text
    assert response.json()["error"] == {
        "code": "dependency_unavailable",
        "message": response.json()["error"]["message"],
        "field": "segment",
    }

"""The counter's handler: add each behaviour's amount to its profile's total, say so downstream."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime

from sqlalchemy import text

from libs.common.bus import Batch, BatchHandler, UnprocessableEvent
from libs.common.events import Event
from libs.common.events.behavior import BehaviorOccurred
from libs.common.events.profile import ProfileChange, ProfileUpdated


class PoisonEvent(ValueError):
    """The test marks an event as one the handler cannot process."""


def counting_handler(schema: str, delay_ms: int, reject_poison: bool) -> BatchHandler:
    async def handle(batch: Batch) -> None:
        totals: dict[str, int] = defaultdict(int)
        counts: dict[str, int] = defaultdict(int)
        for event in batch.of_type(BehaviorOccurred):
            if reject_poison and event.data.properties.get("poison"):
                raise PoisonEvent(f"event {event.id} is poison by design")
            if event.data.properties.get("unprocessable"):
                raise UnprocessableEvent(f"event {event.id} names nothing that exists")
            totals[event.key] += int(event.data.properties.get("amount", 1))
            counts[event.key] += 1
            batch.emit(_counted(event), cause=event)
        if delay_ms:
            # Simulated work, so a test can kill the process while this transaction is open.
            await asyncio.sleep(delay_ms / 1000)
        await batch.session.execute(
            text(
                f"INSERT INTO {schema}.counters (profile_id, total, events) "
                "SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:totals AS bigint[]), "
                "CAST(:counts AS bigint[])) "
                "ON CONFLICT (profile_id) DO UPDATE SET total = counters.total + excluded.total, "
                "events = counters.events + excluded.events"
            ),
            {
                "ids": list(totals),
                "totals": list(totals.values()),
                "counts": [counts[key] for key in totals],
            },
        )

    return handle


def _counted(event: Event[BehaviorOccurred]) -> Event[ProfileUpdated]:
    change = ProfileChange(field="features.counted", after=event.data.properties.get("amount", 1))
    return Event(
        data=ProfileUpdated(
            profile_id=event.key,
            changes=[change],
            occurred_at=datetime.now(UTC),
            caused_by=event.id,
        ),
        key=event.key,
        source="closeloop/counter",
    )

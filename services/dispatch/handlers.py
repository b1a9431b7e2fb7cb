"""The dispatch handler: put rendered messages in the send ledger, follow profiles' merges and
erasures.

Dispatch keeps no copy of profiles: a message carries the address it goes to (`recipient`) and
the time zone its quiet hours are judged in (`time_zone`, kept on its ledger row), both from
the facts its request carried. So dispatch does not accept `profile.updated` (its consumer
skips it unread).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from libs.common.bus import Batch, BatchHandler
from libs.common.contact_policy import merged_preferences
from libs.common.events import (
    ContactRule,
    MessageFailed,
    MessageRendered,
    ProfileDeleted,
    ProfileMerged,
)
from services.dispatch import metrics
from services.dispatch.outcomes import outcome
from services.dispatch.store import DispatchStore

ACCEPTED_TYPES = frozenset(
    {
        MessageRendered.event_type,
        ProfileMerged.event_type,
        ProfileDeleted.event_type,
    }
)


def dispatch_handler(schema: str, wake_sender: Callable[[], None]) -> BatchHandler:
    async def handle(batch: Batch) -> None:
        store = DispatchStore(batch.session, schema)
        ledger_rows: list[dict[str, Any]] = []
        hold = None
        if any(isinstance(event.data, MessageRendered) for event in batch.events):
            hold = (await store.policy()).arbitration.window
        for event in batch.events:
            data = event.data
            if isinstance(data, MessageRendered):
                ledger_rows.append(_ledger_row(event.id, data, batch.traceparent_of(event)))
                continue
            # In the batch's order: the messages before a merge or an erasure are its profile's.
            await _insert(store, ledger_rows, hold)
            ledger_rows = []
            if isinstance(data, ProfileMerged):
                await _merge(store, data)
            elif isinstance(data, ProfileDeleted):
                now = datetime.now(UTC)
                for row in await store.erase_profile(data.profile_id):
                    error = "the profile was erased before the message was sent"
                    batch.emit(
                        outcome(MessageFailed, row, now, error=error, retryable=False),
                        cause=event,
                    )
        if await _insert(store, ledger_rows, hold) or ledger_rows:
            wake_sender()

    return handle


async def _insert(store: DispatchStore, rows: list[dict[str, Any]], hold: timedelta | None) -> int:
    """Put the rows in the ledger, marketing ones held `hold`; how many were new."""
    inserted = await store.insert_sends(rows, hold)
    metrics.HELD.inc(inserted.held)
    return inserted.added


# Ledger ids need to be unique, not secret: no urandom syscall per row, as uuid4 makes.
_random = random.Random()


def _ledger_row(
    event_id: str, data: MessageRendered, traceparent: str | None = None
) -> dict[str, Any]:
    contact = data.contact or ContactRule()
    return {
        "message_id": f"msg_{_random.getrandbits(128):032x}",
        "idempotency_key": data.idempotency_key,
        "event_id": event_id,
        "request_id": data.request_id,
        "profile_id": data.profile_id,
        "channel": data.channel,
        "template_id": data.template_id,
        "template_version": data.template_version,
        "variant_id": data.variant_id,
        "journey": data.journey.model_dump(mode="json"),
        "subject": data.subject,
        "body": data.body,
        "payload": data.payload,
        "recipient": data.recipient,
        "behavior_at": data.behavior_at.isoformat() if data.behavior_at else None,
        # As given: quiet hours judge a zone that does not exist as UTC (policy.profile_zone).
        "time_zone": data.time_zone,
        "traceparent": traceparent,
        "subscription_topic": data.subscription_topic,
        "consent": data.consent.model_dump() if data.consent is not None else None,
        "priority": contact.priority,
        "on_conflict": contact.on_conflict,
        "transactional": contact.transactional,
    }


async def _merge(store: DispatchStore, data: ProfileMerged) -> None:
    merged = [profile for profile in data.merged_ids if profile != data.survivor_id]
    if not merged:
        return
    preferences = await store.preferences([data.survivor_id, *merged])
    others = [preferences[profile] for profile in merged if profile in preferences]
    if others:
        survivor = preferences.get(data.survivor_id)
        await store.save_preferences(data.survivor_id, merged_preferences(survivor, others))
        await store.delete_preferences(merged)
    await store.move_profiles(data.survivor_id, merged)

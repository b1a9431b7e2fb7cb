"""The dispatch handler: put rendered messages in the send ledger, follow profiles' changes."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from libs.common.bus import Batch, BatchHandler
from libs.common.events import (
    MessageFailed,
    MessageRendered,
    ProfileDeleted,
    ProfileMerged,
    ProfileUpdated,
)
from services.dispatch.outcomes import outcome
from services.dispatch.policy import merged_preferences, parse_zone
from services.dispatch.store import DispatchStore

ACCEPTED_TYPES = frozenset(
    {
        MessageRendered.event_type,
        ProfileUpdated.event_type,
        ProfileMerged.event_type,
        ProfileDeleted.event_type,
    }
)
_TIMEZONE = "traits.timezone"


def dispatch_handler(schema: str, wake_sender: Callable[[], None]) -> BatchHandler:
    async def handle(batch: Batch) -> None:
        store = DispatchStore(batch.session, schema)
        # In the batch's order: a time zone set, then a merge, must move the new zone.
        pending_zones: dict[str, str | None] = {}
        message_zones: dict[str, str] = {}
        ledger_rows: list[dict[str, Any]] = []
        for event in batch.events:
            data = event.data
            if isinstance(data, MessageRendered):
                ledger_rows.append(_ledger_row(event.id, data))
                message_zones.update(_message_zone(data))
            elif isinstance(data, ProfileUpdated):
                pending_zones.update(_zone_changes(data))
            else:
                await _save_zones(store, pending_zones, message_zones)
                pending_zones, message_zones = {}, {}
                await store.insert_sends(ledger_rows)
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
        await _save_zones(store, pending_zones, message_zones)
        if await store.insert_sends(ledger_rows) or ledger_rows:
            wake_sender()

    return handle


# Ledger ids need to be unique, not secret: no urandom syscall per row, as uuid4 makes.
_random = random.Random()


def _ledger_row(event_id: str, data: MessageRendered) -> dict[str, Any]:
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
    }


async def _save_zones(
    store: DispatchStore, from_profile: dict[str, str | None], from_messages: dict[str, str]
) -> None:
    """Profile's own word on a zone first; a message's zone only where dispatch has none yet.

    A message carries the zone content knew when it rendered, and it may arrive before the
    `profile.updated` that sets the zone: without it, quiet hours would be judged in UTC."""
    await store.set_zones(from_profile)
    await store.add_unknown_zones(
        {profile: zone for profile, zone in from_messages.items() if profile not in from_profile}
    )


def _message_zone(data: MessageRendered) -> dict[str, str]:
    zone = data.time_zone
    return {data.profile_id: zone} if zone and parse_zone(zone) else {}


def _zone_changes(data: ProfileUpdated) -> dict[str, str | None]:
    """The profile's new zone; a removed or unknown zone is forgotten (quiet hours use UTC)."""
    changes: dict[str, str | None] = {}
    for change in data.changes:
        if change.field == _TIMEZONE:
            zone = change.after if isinstance(change.after, str) else None
            changes[data.profile_id] = zone if zone and parse_zone(zone) else None
    return changes


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

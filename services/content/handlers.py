"""The content handler: keep the profile read model, count the bandit's evidence, and answer
each `message.requested` with a `message.rendered` (or a recorded decision to send nothing)."""

from __future__ import annotations

from libs.common.bus import Batch, BatchHandler
from libs.common.events import (
    ConversionAttributed,
    Event,
    MessageClicked,
    MessageRequested,
    MessageSent,
    ProfileDeleted,
    ProfileMerged,
    ProfileUpdated,
)
from services.content import metrics
from services.content.profiles import apply_change, merge_facts
from services.content.rendering import RequestRenderer
from services.content.store import ContentStore

SOURCE = "closeloop/content"
ACCEPTED_TYPES = frozenset(
    {
        MessageRequested.event_type,
        MessageSent.event_type,
        MessageClicked.event_type,
        ConversionAttributed.event_type,
        ProfileUpdated.event_type,
        ProfileMerged.event_type,
        ProfileDeleted.event_type,
    }
)


def content_handler(schema: str, renderer: RequestRenderer) -> BatchHandler:
    async def handle(batch: Batch) -> None:
        store = ContentStore(batch.session, schema)
        # The read model and the evidence first: the topics are not ordered with each other, so
        # a request and the profile change just before it can arrive in one batch either way.
        for event in batch.events:
            data = event.data
            if isinstance(data, ProfileUpdated | ProfileMerged | ProfileDeleted):
                await _follow_profile(store, data)
            elif isinstance(data, MessageSent | MessageClicked | ConversionAttributed):
                await _count_evidence(store, data)
        for event in batch.of_type(MessageRequested):
            await _answer(batch, store, renderer, event)

    return handle


async def _answer(
    batch: Batch, store: ContentStore, renderer: RequestRenderer, event: Event[MessageRequested]
) -> None:
    request = event.data
    message = await renderer.answer(store, request)
    if message is not None:
        batch.emit(Event(data=message, key=request.profile_id, source=SOURCE), cause=event)


async def _follow_profile(
    store: ContentStore, data: ProfileUpdated | ProfileMerged | ProfileDeleted
) -> None:
    if isinstance(data, ProfileUpdated):
        facts = (await store.lock_profiles([data.profile_id]))[data.profile_id]
        for change in data.changes:
            apply_change(facts, change.field, change.after)
        await store.save_profiles([facts])
    elif isinstance(data, ProfileMerged):
        profiles = await store.lock_profiles([data.survivor_id, *data.merged_ids])
        survivor = profiles[data.survivor_id]
        merge_facts(survivor, [profiles[p] for p in data.merged_ids if p in profiles])
        await store.save_profiles([survivor])
        await store.move_decisions(data.survivor_id, data.merged_ids)
        await store.erase_profiles([p for p in data.merged_ids if p != data.survivor_id])
    else:
        await store.erase_profiles([data.profile_id])


async def _count_evidence(
    store: ContentStore, data: MessageSent | MessageClicked | ConversionAttributed
) -> None:
    """A send is a trial, its first click a success; a conversion adds its credit share."""
    if data.template_id is None or data.variant_id is None:
        return
    if isinstance(data, ConversionAttributed):
        kind, amount = f"conversion:{data.conversion_id}", data.credit_share
    else:
        kind, amount = ("trial" if isinstance(data, MessageSent) else "click"), 1.0
    if await store.count_reward(data.template_id, data.variant_id, data.message_id, kind, amount):
        metrics.BANDIT_UPDATES.labels(kind.split(":")[0]).inc()

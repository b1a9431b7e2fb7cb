"""Profiles reviewed as time passes: the lifecycle stage and RFM recency age without events.

Someone active today is at risk in a month, dormant later and churned in the end, all without
doing anything; a segment of "at risk" customers and a win-back journey must hear of it then.
Each saved profile carries the moment its features may next change (`review_due_at`, from
features.next_review) and the moment they were last announced for (`reviewed_at`). This loop
claims due profiles, emits a `profile.updated` with what aged between the two moments, and
sets the next review, in one transaction with the outbox: a crash before the commit leaves the
profiles due, a crash after it has published nothing twice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from libs.common.bus import OutboxRelay, write_outbox
from libs.common.db import create_sessions, session_transaction
from libs.common.events import Event, ProfileChange, ProfileUpdated
from libs.common.lifecycle import DueWorkLoop
from services.profile.features import FeatureRules
from services.profile.handlers import SOURCE
from services.profile.state import Change, changes
from services.profile.store import ProfileStore, ReviewedProfile


class ProfileReviews(DueWorkLoop):
    """Claims profiles due for review (`FOR UPDATE SKIP LOCKED`) and announces what aged."""

    def __init__(
        self,
        engine: AsyncEngine,
        relay: OutboxRelay,
        schema: str,
        rules: FeatureRules,
        *,
        interval_ms: int,
        batch_size: int,
    ) -> None:
        super().__init__(
            f"profile-reviews:{schema}",
            poll_interval_seconds=interval_ms / 1000,
            batch_size=batch_size,
        )
        self._sessions = create_sessions(engine)
        self._relay = relay
        self._store = ProfileStore(schema)
        self._rules = rules

    async def work_due(self, as_of: float | None = None) -> int:
        """Review one batch of the profiles due by `as_of` (default: now); how many there were."""
        as_of = time.time() if as_of is None else as_of
        async with session_transaction(self._sessions) as session:
            connection = await self._store.connection(session)
            # Claimed rows are locked (FOR UPDATE SKIP LOCKED), as the consumer locks the
            # profiles of its batch: a profile never changes under either.
            due = await self._store.claim_due_reviews(connection, as_of, self.batch_size)
            if not due:
                return 0
            events = [event for profile in due if (event := self._aged(profile, as_of))]
            await self._store.mark_reviewed(
                connection,
                {profile.id: profile.state.next_review(as_of, self._rules) for profile in due},
                as_of,
            )
            await write_outbox(session, self._store.schema, events)
        if events:
            self._relay.notify()
        return len(due)

    def _aged(self, profile: ReviewedProfile, as_of: float) -> Event[ProfileUpdated] | None:
        """The `profile.updated` for what changed since the last announcement, if anything."""
        announced_at = as_of if profile.reviewed_at is None else profile.reviewed_at
        before = profile.state.view(announced_at, self._rules)
        found = changes(before, profile.state.view(as_of, self._rules))
        return timely_update(profile.id, found, as_of) if found else None


def timely_update(profile_id: str, found: Sequence[Change], as_of: float) -> Event[ProfileUpdated]:
    """The `profile.updated` of what time (or a new fit), not an event, changed by `as_of`."""
    return Event(
        data=ProfileUpdated(
            profile_id=profile_id,
            changes=[ProfileChange(field=c.field, before=c.before, after=c.after) for c in found],
            occurred_at=datetime.fromtimestamp(as_of, UTC),
        ),
        key=profile_id,
        source=SOURCE,
    )

"""Upkeep of the engagement evidence: messages and decisions past their retention are deleted,
and the population's priors are refitted from what remains."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from libs.common.db import create_sessions, session_transaction
from libs.common.lifecycle import BackgroundLoop
from services.journey.learning import Policy, fit_priors
from services.journey.store import JourneyStore

# The priors' strengths are fitted from this many people's counts at most: enough for a few
# parameters per channel, and a bounded fit (about 20 MB of arrays with five channels).
FIT_PEOPLE = 10_000
# After a failed pass (the database away at start-up), the next comes this soon at the latest,
# rather than a whole interval later with the priors still flat.
_RETRY_SECONDS = 60.0

_log = logging.getLogger(__name__)


class EvidenceUpkeep(BackgroundLoop):
    """Every `every_seconds`, from start-up on: forget old messages and decisions, then refit
    the policy's priors. The fit runs in a thread, so the event loop keeps serving meanwhile;
    each replica fits its own from the same tables."""

    def __init__(
        self,
        engine: AsyncEngine,
        schema: str,
        policy: Policy,
        *,
        every_seconds: float,
        message_days: float,
        decision_days: float,
    ) -> None:
        self.name = f"journey-evidence:{schema}"
        self._sessions = create_sessions(engine)
        self._schema = schema
        self._policy = policy
        self._every_seconds = every_seconds
        self._message_days = message_days
        self._decision_days = decision_days

    async def upkeep(self) -> None:
        async with session_transaction(self._sessions) as session:
            store = JourneyStore(session, self._schema)
            messages = await store.forget_messages(self._message_days)
            decisions = await store.forget_decisions(self._decision_days)
            rows = await store.engagement_sample(FIT_PEOPLE)
            untargeted = await store.untargeted_engagement()
        self._policy.priors = await asyncio.to_thread(fit_priors, rows, untargeted)
        _log.info(
            "journey priors refitted",
            extra={
                "people": len({row.profile_id for row in rows}),
                "messages_forgotten": messages,
                "decisions_forgotten": decisions,
            },
        )

    async def _run(self) -> None:
        while True:
            try:
                await self.upkeep()
                pause = self._every_seconds
            except Exception:
                _log.exception("journey evidence upkeep failed; will try again")
                pause = min(self._every_seconds, _RETRY_SECONDS)
            await asyncio.sleep(pause)

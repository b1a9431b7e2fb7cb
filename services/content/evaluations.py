"""The variant experiments, evaluated on a schedule and on request: each template with variants,
by Scott's value remaining on its evidence as of now. The leaders are promoted when the
experiment ends and the promotion is lifted when it reopens, each time with an insight.

An evaluation locks its template's row for its transaction, so replicas evaluate different
templates (SKIP LOCKED) and a template once at a time. Once it commits, this process forgets the
template's cached policy: the next request chooses with the promotion as it now stands (other
replicas within `content_model_cache_seconds`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from libs.common.db import create_sessions, session_transaction
from libs.common.lifecycle import DueWorkLoop
from services.content.experiments import Experiment, PolicyCache, evaluate_experiment
from services.content.store import ContentStore, StoredInsight, TemplateRow

_log = logging.getLogger(__name__)
# Due templates are looked for at least this often.
_LONGEST_POLL_SECONDS = 60.0
# Templates evaluated per transaction.
_BATCH = 20


class NothingToEvaluate(Exception):
    """The template has a single variant: there is no experiment."""


@dataclass(frozen=True)
class Evaluated:
    """A template's experiment after an evaluation, and the insight it wrote, if any."""

    experiment: Experiment
    insight: StoredInsight | None


class ExperimentEvaluations(DueWorkLoop):
    """Evaluates each template with variants once per `interval_seconds`."""

    def __init__(
        self,
        engine: AsyncEngine,
        schema: str,
        policies: PolicyCache,
        *,
        interval_seconds: float,
        half_life_days: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(
            f"experiment-evaluations:{schema}",
            poll_interval_seconds=min(_LONGEST_POLL_SECONDS, interval_seconds),
            batch_size=_BATCH,
        )
        self.half_life_days = half_life_days
        self._sessions = create_sessions(engine)
        self._schema = schema
        self._policies = policies
        self._interval = timedelta(seconds=interval_seconds)
        self._clock = clock

    async def work_due(self) -> int:
        """Evaluate the templates not evaluated for an interval, a batch of them."""
        now = self._clock()
        async with session_transaction(self._sessions) as session:
            store = ContentStore(session, self._schema)
            due = await store.claim_due_evaluations(now - self._interval, self.batch_size)
            for row in due:
                await self._evaluate(store, row, now)
        for row in due:
            self._policies.forget(row.id)
        return len(due)

    async def evaluate_now(self, template_id: str) -> Evaluated | None:
        """Evaluate the template now (after an evaluation of it under way, if any); None when
        there is no such template, NothingToEvaluate when it has a single variant."""
        now = self._clock()
        async with session_transaction(self._sessions) as session:
            store = ContentStore(session, self._schema)
            row = await store.lock_template(template_id)
            if row is None:
                return None
            if len(row.variants) < 2:
                raise NothingToEvaluate(f"Template {template_id!r} has a single variant.")
            evaluated = await self._evaluate(store, row, now)
        self._policies.forget(template_id)
        return evaluated

    async def _evaluate(self, store: ContentStore, row: TemplateRow, now: datetime) -> Evaluated:
        evidence = (await store.evidence([row.id])).get(row.id, [])
        previous = await store.experiment(row.id)
        # Thousands of posterior draws per context: off the event loop.
        experiment, insight = await asyncio.to_thread(
            evaluate_experiment, row.current(), evidence, previous, now, self.half_life_days
        )
        await store.save_experiment(experiment)
        if insight is None:
            return Evaluated(experiment, None)
        _log.info(insight.message, extra={"template_id": row.id, "insight": insight.kind})
        return Evaluated(experiment, await store.add_insight(insight))

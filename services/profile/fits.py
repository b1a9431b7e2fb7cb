"""The purchase models behind the predictive scores: fitted over every profile with purchases on
a schedule (and on request), every profile re-scored with them, and backtests.

A fit holds an advisory lock for its transaction, so replicas fit in turn and a due fit runs
once. Its row in `prediction_fits` then serves as the cursor of the re-score: each transaction
locks the row, re-scores the next profiles in id order (locked as a consumer batch locks them,
so neither changes a profile under the other) and moves the cursor on, writing the
`profile.updated` of every profile whose rounded scores, or lifecycle stage, changed to the
outbox. A crash leaves the cursor where the last commit put it; the next poll goes on from there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from libs.common.bus import OutboxRelay, write_outbox
from libs.common.db import create_sessions, session_transaction
from libs.common.events import Event, ProfileUpdated
from libs.common.lifecycle import DueWorkLoop
from services.profile import predictions
from services.profile.features import FeatureRules
from services.profile.predictions import PurchaseHistory
from services.profile.review import timely_update
from services.profile.scoring import ScoreModel, fit_models, predict
from services.profile.state import ProfileState, changes
from services.profile.store import (
    Connection,
    FitRecord,
    ProfileStore,
    ReviewedProfile,
    parse_purchase_days,
)

_log = logging.getLogger(__name__)
# A due fit or an unfinished re-score is looked for at least this often.
_LONGEST_POLL_SECONDS = 60.0


class PredictionFits(DueWorkLoop):
    """Fits the purchase models when due and re-scores every profile with purchases."""

    def __init__(
        self,
        engine: AsyncEngine,
        relay: OutboxRelay,
        schema: str,
        rules: FeatureRules,
        *,
        fit_interval_hours: float,
        rescore_batch: int,
        churn_horizon_days: float,
    ) -> None:
        self._fit_interval = fit_interval_hours * 3600
        super().__init__(
            f"prediction-fits:{schema}",
            poll_interval_seconds=min(_LONGEST_POLL_SECONDS, self._fit_interval),
            batch_size=rescore_batch,
        )
        self._sessions = create_sessions(engine)
        self._relay = relay
        self._store = ProfileStore(schema)
        self._rules = rules
        self.churn_horizon_days = churn_horizon_days
        self._tried = False  # at start, a workspace without a model tries a fit at once

    async def work_due(self) -> int:
        """Re-score the next profiles of an unfinished re-score; else fit, if a fit is due.
        A fit counts as a full batch, so that its re-score starts at once."""
        rescored = await self.rescore_next(wait=False)
        if rescored is not None:
            return rescored
        async with session_transaction(self._sessions) as session:
            connection = await self._store.connection(session)
            if not await self._store.lock_fitting(connection, wait=False):
                return 0  # a replica is fitting
            if not await self._due(connection):
                return 0
            fitted = await self._fit(connection)
        return self.batch_size if fitted.model is not None else 0

    async def fit_now(self) -> FitRecord:
        """Fit now (after a fit under way, if any) and re-score everyone before returning; the
        fit's record, with `error` set when there were too few histories to fit."""
        async with session_transaction(self._sessions) as session:
            connection = await self._store.connection(session)
            await self._store.lock_fitting(connection, wait=True)
            fitted = await self._fit(connection)
        if fitted.model is None:
            return fitted
        while await self.rescore_next(wait=True) is not None:
            pass
        async with session_transaction(self._sessions) as session:
            connection = await self._store.connection(session)
            return await self._store.fit(connection, fitted.id) or fitted

    async def latest(self) -> tuple[FitRecord | None, FitRecord | None]:
        """The latest fit that fitted (whose models score), and the latest fit."""
        async with session_transaction(self._sessions) as session:
            connection = await self._store.connection(session)
            fitted = await self._store.last_fit(connection, succeeded=True)
            return fitted, await self._store.last_fit(connection)

    async def backtest(
        self, cutoff: datetime, horizon_days: float, *, with_outcomes: bool
    ) -> predictions.BacktestReport:
        """Fit on the purchases before `cutoff` and judge the predictions for the horizon after
        it (predictions.backtest); ValueError with too few histories before the cutoff."""
        async with session_transaction(self._sessions) as session:
            connection = await self._store.connection(session)
            documents = await self._store.purchase_day_documents(connection)
        return await asyncio.to_thread(_backtest, documents, cutoff, horizon_days, with_outcomes)

    async def rescore_next(self, *, wait: bool) -> int | None:
        """Re-score the next batch of the latest fit's re-score: how many profiles, or None when
        there is none unfinished (or, without `wait`, a replica holds it)."""
        as_of = time.time()
        async with session_transaction(self._sessions) as session:
            connection = await self._store.connection(session)
            rescore = await self._store.claim_rescore(connection, wait=wait)
            if rescore is None:
                return None
            # The latest fit that fitted: the one whose re-score was claimed.
            model = await self._store.score_model(connection)
            if model is None:
                return None
            profiles = await self._store.profiles_to_rescore(
                connection, rescore.through, self.batch_size
            )
            saved, events = rescored(profiles, model, as_of, self._rules, self.churn_horizon_days)
            await self._store.save_rescored(connection, saved, as_of)
            await self._store.advance_rescore(
                connection,
                rescore,
                profiles[-1].id if profiles else rescore.through,
                len(profiles),
                len(events),
                as_of if len(profiles) < self.batch_size else None,
            )
            await write_outbox(session, self._store.schema, events)
        if events:
            self._relay.notify()
        return len(profiles)

    async def _fit(self, connection: Connection) -> FitRecord:
        """Fit over every profile with purchases as of now and record the fit, or why it
        failed (too few histories: ValueError from the models)."""
        self._tried = True
        fitted_at = time.time()
        documents = await self._store.purchase_day_documents(connection)
        histories = await asyncio.to_thread(_histories, documents, fitted_at)
        try:
            fitted = await asyncio.to_thread(fit_models, histories)
        except ValueError as error:
            _log.warning("The purchase models could not be fitted: %s", error)
            repeat_buyers = sum(1 for history in histories if history.frequency > 0)
            return await self._store.record_failed_fit(
                connection, fitted_at, len(histories), repeat_buyers, str(error)
            )
        record = await self._store.record_fit(connection, fitted_at, fitted)
        _log.info(
            "Fitted the purchase models over %d profiles (%d repeat buyers): fit %d",
            fitted.profiles,
            fitted.repeat_buyers,
            record.id,
        )
        return record

    async def _due(self, connection: Connection) -> bool:
        last = await self._store.last_fit(connection)
        if last is None or (last.model is None and not self._tried):
            return True
        return last.fitted_at + self._fit_interval <= time.time()


def _histories(documents: Sequence[tuple[str, str]], as_of: float) -> list[PurchaseHistory]:
    return [
        history
        for days in parse_purchase_days(documents).values()
        if (history := days.history(as_of)) is not None
    ]


def _backtest(
    documents: Sequence[tuple[str, str]], cutoff: datetime, horizon_days: float, outcomes: bool
) -> predictions.BacktestReport:
    timelines = {pid: days.timeline() for pid, days in parse_purchase_days(documents).items()}
    return predictions.backtest(timelines, cutoff, horizon_days, with_outcomes=outcomes)


def rescored(
    profiles: Sequence[ReviewedProfile],
    model: ScoreModel,
    as_of: float,
    rules: FeatureRules,
    churn_horizon_days: float,
) -> tuple[dict[str, tuple[ProfileState, float | None]], list[Event[ProfileUpdated]]]:
    """Each profile with its new scores and next review, and the `profile.updated` of what
    changed since it was last announced: its rounded scores, the lifecycle stage they move, and
    whatever time changed meanwhile (as a review would say). Nothing for a profile whose rounded
    scores stayed put."""
    histories = {
        profile.id: history
        for profile in profiles
        if (history := profile.state.purchase_history(as_of)) is not None
    }
    scored = predict(model, histories, as_of, churn_horizon_days)
    saved: dict[str, tuple[ProfileState, float | None]] = {}
    events = []
    for profile in profiles:
        state = profile.state
        announced_at = as_of if profile.reviewed_at is None else profile.reviewed_at
        before = state.view(announced_at, rules)
        state.predicted = scored.get(profile.id, state.predicted)
        found = changes(before, state.view(as_of, rules))
        if found:
            events.append(timely_update(profile.id, found, as_of))
        saved[profile.id] = (state, state.next_review(as_of, rules))
    return saved, events

"""The send journal: each send's attempt committed right before its provider call, and its
result right after, with group commit.

Callers queue an attempt or a result and await it; one writer takes everything queued and
commits it in one transaction per round (results with their outcome events in the outbox and
their dead letters, as one batch), then answers every caller of the round. So a row attempted
and not recorded is one whose call was in flight, and each send costs the ledger a share of two
commits rather than two commits of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any

from libs.common.bus import EventProducer, OutboxRelay, write_outbox
from libs.common.bus.dlq import DeadLetter, send_to_dlq
from libs.common.db import Sessions, session_transaction
from libs.common.events import Event
from services.dispatch import metrics
from services.dispatch.store import DispatchStore, SendUpdate

_log = logging.getLogger(__name__)
_RETRY_BACKOFF_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)
# Rounds committing at once, each on its own connection: a round's entries wait for the round
# before them only while this many are in the database (their rows never overlap: a result is
# queued only once its attempt committed).
_CONCURRENT_ROUNDS = 3


class Attempt(Enum):
    """What the journal answered a sender about to call a provider."""

    STARTED = "started"  # journalled: call now
    TAKEN_OVER = "taken_over"  # another sender owns the row now: leave it
    NOT_ALIVE = "not_alive"  # this sender's heartbeat is stale: others may be taking over; wait


# A result's answer: recorded or not, and the next row's attempt when one rode along.
_Recorded = tuple[bool, Attempt | None]


@dataclass(frozen=True)
class Outcome:
    """A call's result as the ledger, the outbox and the DLQ take it."""

    update: SendUpdate
    event: Event[Any]
    letter: DeadLetter | None = None


class SendJournal:
    """The journal writer of one sender process (`owner`)."""

    def __init__(
        self,
        sessions: Sessions,
        schema: str,
        owner: str,
        takeover: timedelta,
        producer: EventProducer,
        group: str,
        relay: OutboxRelay,
    ) -> None:
        self._sessions = sessions
        self._schema = schema
        self._owner = owner
        self._takeover = takeover
        self._producer = producer
        self._group = group
        self._relay = relay
        self._attempts: list[tuple[str, asyncio.Future[Attempt]]] = []
        self._outcomes: list[tuple[Outcome, str | None, asyncio.Future[_Recorded]]] = []
        self._queued = asyncio.Event()

    async def attempt(self, message_id: str) -> Attempt:
        """Journal that the row's call starts now; call only on STARTED."""
        done: asyncio.Future[Attempt] = asyncio.get_running_loop().create_future()
        self._attempts.append((message_id, done))
        self._queued.set()
        return await done

    async def record(
        self, outcome: Outcome, then_attempt: str | None = None
    ) -> tuple[bool, Attempt | None]:
        """Journal the call's result (False if another sender had taken the row over) and, in
        the same commit, the attempt of the row the caller calls next, if it names one: the
        caller then never holds more than one attempted row without a result."""
        done: asyncio.Future[_Recorded] = asyncio.get_running_loop().create_future()
        self._outcomes.append((outcome, then_attempt, done))
        self._queued.set()
        return await done

    async def run(self) -> None:
        """Write rounds for ever; a round that fails is written again, whole, until it commits
        (nothing can be sent or recorded while the database is away anyway)."""
        free = asyncio.Semaphore(_CONCURRENT_ROUNDS)
        rounds: set[asyncio.Task[None]] = set()
        try:
            while True:
                await free.acquire()
                await self._queued.wait()
                self._queued.clear()
                attempts, self._attempts = self._attempts, []
                outcomes, self._outcomes = self._outcomes, []
                task = asyncio.create_task(self._write_until_committed(attempts, outcomes))
                rounds.add(task)
                task.add_done_callback(rounds.discard)
                task.add_done_callback(lambda _: free.release())
        finally:
            for task in list(rounds):
                task.cancel()

    async def _write_until_committed(
        self,
        attempts: list[tuple[str, asyncio.Future[Attempt]]],
        outcomes: list[tuple[Outcome, str | None, asyncio.Future[_Recorded]]],
    ) -> None:
        failures = 0
        began = time.perf_counter()
        while True:
            try:
                started, recorded = await self._write(
                    [message_id for message_id, _ in attempts]
                    + [then for _, then, _ in outcomes if then is not None],
                    [o for o, _, _ in outcomes],
                )
                break
            except Exception:
                delay = _RETRY_BACKOFF_SECONDS[min(failures, len(_RETRY_BACKOFF_SECONDS) - 1)]
                failures += 1
                _log.exception("send journal write failed; retrying", extra={"owner": self._owner})
                await asyncio.sleep(delay)
        metrics.JOURNAL_ROUND_SECONDS.observe(time.perf_counter() - began)
        metrics.JOURNAL_ROUND_ENTRIES.observe(len(attempts) + len(outcomes))
        if recorded:
            self._relay.notify()
        for message_id, attempt_done in attempts:
            if not attempt_done.done():
                attempt_done.set_result(_answer(message_id, started))
        for outcome, then, record_done in outcomes:
            if not record_done.done():
                record_done.set_result(
                    (
                        outcome.update.message_id in recorded,
                        None if then is None else _answer(then, started),
                    )
                )

    async def _write(
        self, attempts: list[str], outcomes: list[Outcome]
    ) -> tuple[set[str] | None, set[str]]:
        """One round in one transaction: the attempts started (None when this sender is not
        alive) and the results recorded."""
        async with session_transaction(self._sessions) as session:
            store = DispatchStore(session, self._schema)
            round_ = await store.journal_round(
                attempts, [o.update for o in outcomes], self._owner, self._takeover
            )
            recorded = set(round_.recorded)
            events = [o.event for o in outcomes if o.update.message_id in recorded]
            await write_outbox(session, self._schema, events)
            letters = [
                o.letter
                for o in outcomes
                if o.letter is not None and o.update.message_id in recorded
            ]
            if letters:
                # Before the commit: a crash in between dead-letters again, never loses it.
                await send_to_dlq(self._producer, self._group, letters)
        return (set(round_.started) if round_.alive else None), recorded


def _answer(message_id: str, started: set[str] | None) -> Attempt:
    if started is None:
        return Attempt.NOT_ALIVE
    return Attempt.STARTED if message_id in started else Attempt.TAKEN_OVER

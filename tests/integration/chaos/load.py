"""Steady load through the whole loop: new people at a fixed rate, a purchase for some of them.

Each person is one Segment `identify` that puts them in the run's segment, with an email address
and a phone number; the journey sends them a webhook, an email and an SMS. Every
`purchase_every`-th person later buys: the purchase is posted once attribution has recorded a
`message.sent` touch of the journey, so the conversion definition deterministically credits one
of its messages. Every call carries a fixed messageId and is retried until ingest answers
200 (as Segment's libraries do), so a call that ingest took but whose answer was lost is a
duplicate the platform must recognise, not a second event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from tests.integration.support import wait_for

# How long one call is retried before the load gives up on it (it is then "unaccepted").
_GIVE_UP_AFTER_S = 120.0
_RETRY_FIRST_S = 0.2
_RETRY_MAX_S = 2.0
# Answers worth retrying: ingest or the broker is down or overloaded; anything else is final.
_RETRYABLE = frozenset({429, 500, 502, 503, 504})
_TICK_S = 0.05
# Requests in flight at once. Without a bound, calls retried while ingest is down pile up in
# httpx's pool, whose queue handling is quadratic: the test's own event loop would starve.
_IN_FLIGHT = 100
_PURCHASE_POLL_S = 0.25


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class Call:
    """One Segment call of the load, and what became of posting it."""

    kind: str
    message_id: str
    attempts: int = 0
    accepted: bool = False
    rejected: str | None = None


@dataclass
class Person:
    user: str
    phase: str
    buys: bool
    identify: Call
    purchase: Call | None = None


@dataclass
class LoadStats:
    failed_attempts: Counter[str] = field(default_factory=Counter)


class Load:
    """Posts the calls; `phase` names the fault window new people are counted under."""

    def __init__(
        self,
        *,
        ingest_url: str,
        write_key: str,
        run: str,
        rate: float,
        purchase_every: int,
        journey_id: str,
        dsn: str,
        profile_schema: str,
        attribution_schema: str,
    ) -> None:
        self.run = run
        self.rate = rate
        self.purchase_every = purchase_every
        self.journey_id = journey_id
        self.phase = "start"
        self.people: dict[str, Person] = {}
        self.stats = LoadStats()
        self._dsn = dsn
        self._profile = profile_schema
        self._attribution = attribution_schema
        self._client = httpx.AsyncClient(
            base_url=ingest_url,
            auth=httpx.BasicAuth(write_key, ""),
            timeout=httpx.Timeout(10.0),
            limits=httpx.Limits(max_connections=_IN_FLIGHT, max_keepalive_connections=_IN_FLIGHT),
        )
        self._slots = asyncio.Semaphore(_IN_FLIGHT)
        self._calls: set[asyncio.Task[None]] = set()
        self._producing = asyncio.Event()
        self._running: list[asyncio.Task[None]] = []

    # -- running ------------------------------------------------------------------------------

    def start(self) -> None:
        self._producing.set()
        self._running = [
            asyncio.create_task(self._people(), name="chaos-load-people"),
            asyncio.create_task(self._purchases(), name="chaos-load-purchases"),
        ]

    async def stop(self, *, within: float) -> list[str]:
        """Stop adding people; return once every buyer's purchase and every call has an answer,
        or the deadline passed: then the buyers whose send attribution never recorded (so that
        the test can still count what happened, and say who is missing)."""
        self._producing.clear()
        started = time.monotonic()

        def unposted() -> list[str]:
            self._raise_if_failed()
            return [
                person.user
                for person in self.people.values()
                if person.buys and person.identify.accepted and person.purchase is None
            ]

        async def purchases_posted() -> bool:
            return not unposted()

        with contextlib.suppress(AssertionError):
            await wait_for(
                purchases_posted, within=within, what="every buyer's purchase to be posted"
            )
        missing = unposted()
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
        # At least the time one call may take (httpx's 10 s), even past the drain's deadline.
        remaining = max(15.0, within - (time.monotonic() - started))

        async def answered() -> bool:
            return not self._calls

        await wait_for(answered, within=remaining, what="every call of the load to be answered")
        return missing

    async def close(self) -> None:
        for task in [*self._running, *self._calls]:
            task.cancel()
        await asyncio.gather(*self._running, *self._calls, return_exceptions=True)
        await self._client.aclose()

    def _raise_if_failed(self) -> None:
        for task in self._running:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise AssertionError("the load stopped") from task.exception()

    # -- the two producers --------------------------------------------------------------------

    async def _people(self) -> None:
        """New people at `rate` per second, on an absolute schedule (no drift)."""
        started = time.monotonic()
        issued = 0
        while self._producing.is_set():
            due = int((time.monotonic() - started) * self.rate)
            while issued < due:
                self._add_person(issued)
                issued += 1
            await asyncio.sleep(_TICK_S)

    def _add_person(self, index: int) -> None:
        user = f"{self.run}_{index}"
        person = Person(
            user=user,
            phase=self.phase,
            buys=index % self.purchase_every == 0,
            identify=Call("identify", str(uuid.uuid4())),
        )
        self.people[user] = person
        body = {
            "userId": user,
            "messageId": person.identify.message_id,
            "traits": {
                "chaos_run": self.run,
                "chaos_user": user,
                "email": f"{user}@chaos.test",
                "phone": f"+1555{index:07d}",
            },
            "timestamp": _now(),
        }
        self._spawn(person.identify, "/v1/identify", body)

    async def _purchases(self) -> None:
        """Post each buyer's purchase once attribution knows a message that reached them."""
        connection: asyncpg.Connection | None = None
        query = (
            f"SELECT DISTINCT i.value FROM {self._attribution}.touchpoints t "
            f"JOIN {self._profile}.identities i ON i.profile_id = t.profile_id "
            "AND i.kind = 'user_id' WHERE t.journey_id = $1 AND t.outcome = 'message.sent' "
            "AND i.value = ANY($2::text[])"
        )
        try:
            while True:
                waiting = [
                    person.user
                    for person in self.people.values()
                    if person.buys and person.purchase is None and person.identify.accepted
                ]
                try:
                    if connection is None or connection.is_closed():
                        connection = await asyncpg.connect(self._dsn, timeout=2)
                    touched = await connection.fetch(query, self.journey_id, waiting, timeout=5)
                except (
                    OSError,
                    TimeoutError,
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                    asyncpg.InternalClientError,
                ):
                    # PostgreSQL is being restarted (or the query timed out, which leaves the
                    # connection unusable): ask again on a new connection at the next poll.
                    if connection is not None:
                        connection.terminate()
                    connection = None
                    touched = []
                for row in touched:
                    person = self.people.get(row[0])
                    if person is not None and person.buys and person.purchase is None:
                        self._post_purchase(person)
                await asyncio.sleep(_PURCHASE_POLL_S)
        finally:
            if connection is not None:
                connection.terminate()

    def _post_purchase(self, person: Person) -> None:
        person.purchase = Call("order_completed", str(uuid.uuid4()))
        body = {
            "userId": person.user,
            "messageId": person.purchase.message_id,
            "event": "order_completed",
            "properties": {"revenue": 42.0, "currency": "CNY", "order_id": person.user},
            "timestamp": _now(),
        }
        self._spawn(person.purchase, "/v1/track", body)

    # -- posting with retries -----------------------------------------------------------------

    def _spawn(self, call: Call, path: str, body: dict[str, Any]) -> None:
        task = asyncio.create_task(self._post(call, path, body))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _post(self, call: Call, path: str, body: dict[str, Any]) -> None:
        """Post until ingest answers 200 (same messageId every time), or give up."""
        deadline = time.monotonic() + _GIVE_UP_AFTER_S
        backoff = _RETRY_FIRST_S
        while True:
            call.attempts += 1
            status: int | None = None
            async with self._slots:
                with contextlib.suppress(httpx.TransportError):
                    status = (await self._client.post(path, json=body)).status_code
            if status == 200:
                call.accepted = True
                return
            self.stats.failed_attempts[str(status or "transport error")] += 1
            if status is not None and status not in _RETRYABLE:
                call.rejected = f"HTTP {status}"
                return
            if time.monotonic() > deadline:
                call.rejected = f"gave up after {call.attempts} attempts"
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _RETRY_MAX_S)

"""What every service's routes share: the parts a service keeps on `app.state` at startup, typed
dependencies that read them, and the store dependency a route opens its transaction with.

A service declares its store dependency once::

    Stores = Annotated[StoreTransactions[SegmentStore], Depends(transactions_of(SegmentStore))]

and a route opens it where its work is::

    async def get_segment(segment_id: str, stores: Stores) -> SegmentResponse:
        async with stores() as store:
            row = await store.get_segment(segment_id)
        return _response(row)

The transaction commits when the `async with` block ends, inside the route and before the
response is built: a commit that fails (a serialization conflict, a deadlock, a timeout) raises
there and answers as any database error does (a conflict is a 503, see `libs.common.errors`),
never a 2xx for a write that was then lost. That is why the store is not itself a yield
dependency, whose exit code runs only after the response is built.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from libs.common.bus import OutboxRelay
from libs.common.db import Sessions, create_sessions, session_transaction

S = TypeVar("S")
T = TypeVar("T")


@dataclass(frozen=True)
class Database:
    """The service's sessions and schema, kept on `app.state.database`."""

    sessions: Sessions
    schema: str

    @classmethod
    def of(cls, engine: AsyncEngine, schema: str) -> Database:
        return cls(create_sessions(engine), schema)


def database_state(engine: AsyncEngine, schema: str) -> dict[str, object]:
    """What `create_app(state=...)` keeps for the store dependencies: `database`."""
    return {"database": Database.of(engine, schema)}


def from_state(name: str, kind: type[T]) -> Callable[[Request], Awaitable[T]]:
    """A dependency answering `request.app.state.<name>`, which must be a `kind`."""

    # async, so FastAPI calls it on the event loop rather than through its thread pool.
    async def dependency(request: Request) -> T:
        return state_of(request, name, kind)

    dependency.__name__ = f"{name}_from_state"
    return dependency


def state_of(request: Request, name: str, kind: type[T]) -> T:
    """`request.app.state.<name>`, checked to be a `kind` (the app factory put it there)."""
    value = getattr(request.app.state, name, None)
    if not isinstance(value, kind):
        raise TypeError(f"app.state.{name} is {type(value).__name__}, not {kind.__name__}")
    return value


class StoreTransactions(Generic[S]):
    """Opens a transaction and hands over a store on it: `async with stores() as store:`.

    Committed when the block ends, rolled back if it raises (see `session_transaction`).
    """

    def __init__(self, database: Database, store: Callable[[AsyncSession, str], S]) -> None:
        self._database = database
        self._store = store

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[S]:
        async with session_transaction(self._database.sessions) as session:
            yield self._store(session, self._database.schema)


def transactions_of(
    store: Callable[[AsyncSession, str], S],
) -> Callable[[Request], Awaitable[StoreTransactions[S]]]:
    """The dependency handing a route its `StoreTransactions` over `app.state.database`."""

    async def dependency(request: Request) -> StoreTransactions[S]:
        return StoreTransactions(state_of(request, "database", Database), store)

    dependency.__name__ = f"{getattr(store, '__name__', 'store')}_transactions"
    return dependency


RelayDep = Annotated[OutboxRelay, Depends(from_state("relay", OutboxRelay))]

"""A route's store transaction commits inside the route, before the response is built: a commit
that fails for a conflict answers 503, never the 2xx the route was about to give."""

from __future__ import annotations

from types import TracebackType
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient

from libs.common.api import Database, StoreTransactions, from_state, transactions_of
from libs.common.errors import UnexpectedErrorMiddleware, install_error_handlers


class _Conflict(Exception):
    sqlstate = "40001"  # serialization_failure


class _Session:
    """Records what happens to its transaction; its commit fails if told to."""

    def __init__(self, log: list[str], *, commit_fails: bool) -> None:
        self.log = log
        self.commit_fails = commit_fails

    async def __aenter__(self) -> _Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def begin(self) -> _Session.Transaction:
        return _Session.Transaction(self)

    class Transaction:
        def __init__(self, session: _Session) -> None:
            self.session = session

        async def __aenter__(self) -> None:
            self.session.log.append("begin")

        async def __aexit__(
            self,
            kind: type[BaseException] | None,
            error: BaseException | None,
            traceback: TracebackType | None,
        ) -> None:
            if kind is not None:
                self.session.log.append("rollback")
                return
            if self.session.commit_fails:
                self.session.log.append("commit failed")
                raise _Conflict("could not serialize access")
            self.session.log.append("commit")


class _Store:
    def __init__(self, session: Any, schema: str) -> None:
        self.session = session
        self.schema = schema

    def write(self) -> None:
        self.session.log.append(f"write in {self.schema}")


Stores = Annotated[StoreTransactions[_Store], Depends(transactions_of(_Store))]
Label = Annotated[str, Depends(from_state("label", str))]
router = APIRouter()


@router.post("/things", status_code=201)
async def create_thing(stores: Stores, label: Label) -> dict[str, str]:
    async with stores() as store:
        store.write()
    store.session.log.append("response built")
    return {"label": label}


def _client(log: list[str], *, commit_fails: bool) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(UnexpectedErrorMiddleware)
    app.include_router(router)
    sessions = lambda: _Session(log, commit_fails=commit_fails)  # noqa: E731
    app.state.database = Database(sessions, "things")  # type: ignore[arg-type]
    app.state.label = "a thing"
    return TestClient(app, raise_server_exceptions=False)


def test_the_transaction_commits_before_the_response_is_built() -> None:
    log: list[str] = []
    response = _client(log, commit_fails=False).post("/things")
    assert response.status_code == 201
    assert response.json() == {"label": "a thing"}
    assert log == ["begin", "write in things", "commit", "response built"]


def test_a_commit_that_fails_for_a_conflict_is_a_503_not_a_201() -> None:
    log: list[str] = []
    response = _client(log, commit_fails=True).post("/things")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "conflict"
    assert log == ["begin", "write in things", "commit failed"]


def test_a_part_missing_from_app_state_is_named() -> None:
    app = FastAPI()
    app.include_router(router)
    app.state.database = Database(lambda: None, "things")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"app\.state\.label"):
        TestClient(app).post("/things")

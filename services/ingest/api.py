"""`/sources`: the management API for sources and their write keys (admin token required)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from libs.common.api import StoreTransactions, transactions_of
from libs.common.auth import require_admin
from libs.common.errors import MANAGEMENT_ERRORS, ApiError, error_responses
from services.ingest.gateway import Ingest, IngestDep
from services.ingest.schemas import SourceCreate, SourceCreated, SourceView
from services.ingest.sources import Source, new_source_id, new_write_key
from services.ingest.store import IngestStore

router = APIRouter(
    prefix="/sources",
    tags=["sources"],
    dependencies=[Depends(require_admin)],
    responses=MANAGEMENT_ERRORS,
)
_NOT_FOUND = error_responses(404)
Stores = Annotated[StoreTransactions[IngestStore], Depends(transactions_of(IngestStore))]


@router.post("", status_code=201)
async def create_source(body: SourceCreate, stores: Stores) -> SourceCreated:
    """A new source; the answer holds its write key, which cannot be read again."""
    key = new_write_key()
    async with stores() as store:
        source = await store.add_source(new_source_id(), body.name, key)
    return SourceCreated(**SourceView.of(source).model_dump(), write_key=key.key)


@router.get("")
async def list_sources(stores: Stores) -> list[SourceView]:
    async with stores() as store:
        sources = await store.sources()
    return [SourceView.of(source) for source in sources]


@router.post("/{source_id}/disable", responses=_NOT_FOUND)
async def disable_source(source_id: str, stores: Stores, ingest: IngestDep) -> SourceView:
    """Calls with this source's key are refused from now on (on other replicas within seconds)."""
    return SourceView.of(await _set_enabled(stores, ingest, source_id, enabled=False))


@router.post("/{source_id}/enable", responses=_NOT_FOUND)
async def enable_source(source_id: str, stores: Stores, ingest: IngestDep) -> SourceView:
    return SourceView.of(await _set_enabled(stores, ingest, source_id, enabled=True))


@router.delete("/{source_id}", status_code=204, responses=_NOT_FOUND)
async def delete_source(source_id: str, stores: Stores, ingest: IngestDep) -> Response:
    async with stores() as store:
        if not await store.delete_source(source_id):
            raise _no_such_source(source_id)
    ingest.write_keys.forget_source(source_id)
    return Response(status_code=204)


async def _set_enabled(
    stores: StoreTransactions[IngestStore], ingest: Ingest, source_id: str, *, enabled: bool
) -> Source:
    async with stores() as store:
        source = await store.set_enabled(source_id, enabled)
    if source is None:
        raise _no_such_source(source_id)
    ingest.write_keys.forget_source(source_id)
    return source


def _no_such_source(source_id: str) -> ApiError:
    return ApiError(404, "not_found", f"There is no source {source_id!r}.")

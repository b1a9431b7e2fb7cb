"""`POST /v1/import`: NDJSON or CSV streamed in, published in chunks, its job kept to read back."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request

from libs.common import topics
from libs.common.bus import Message
from libs.common.bus.chunks import PartitionChunks
from libs.common.errors import ApiError, error_responses
from libs.common.tracing import current_traceparent
from services.ingest.calls import CallRejected, Receipt
from services.ingest.gateway import (
    WRITE_KEY_SECURITY,
    Ingest,
    IngestDep,
    authenticate,
    body_chunks,
    partition_count,
    publish,
)
from services.ingest.imports import (
    CsvHeaderInvalid,
    CsvReader,
    ImportJob,
    ImportOrder,
    ImportRow,
    NdjsonReader,
    chunk_message,
    import_format,
    import_message,
    new_import_id,
    person_ids,
)
from services.ingest.schemas import ImportJobView

router = APIRouter(prefix="/v1", tags=["import"])


@router.post(
    "/import", responses=error_responses(400, 401, 415, 503), openapi_extra=WRITE_KEY_SECURITY
)
async def import_calls(request: Request, ingest: IngestDep) -> ImportJobView:
    """Bulk calls from CRM, order or membership systems: one per NDJSON line or CSV row.

    The body is read as it streams and published in chunks, so its size is not limited by memory.
    """
    source = await authenticate(request, ingest)
    import_as = import_format(request.headers.get("content-type"))
    if import_as is None:
        raise ApiError(
            415,
            "unsupported_media_type",
            "Send `Content-Type: application/x-ndjson` or `text/csv`.",
            "Content-Type",
        )
    job = ImportJob(new_import_id(), source.id, import_as)
    async with ingest.stores() as store:
        await store.start_import(job)
    try:
        await _ImportRun(
            ingest, job, Receipt(source.id, datetime.now(UTC), traceparent=current_traceparent())
        ).run(request)
    except CsvHeaderInvalid as invalid:
        await _finish(ingest, job, "failed")
        raise ApiError(400, "invalid_csv_header", str(invalid), invalid.column) from None
    except BaseException:
        await _finish(ingest, job, "failed")
        raise
    await _finish(ingest, job, "completed")
    return ImportJobView.of(job)


@router.get(
    "/import/{job_id}",
    responses=error_responses(401, 404, 422),
    openapi_extra=WRITE_KEY_SECURITY,
)
async def read_import(job_id: str, request: Request, ingest: IngestDep) -> ImportJobView:
    """An import job of the write key's source."""
    source = await authenticate(request, ingest)
    async with ingest.stores() as store:
        job = await store.import_job(job_id, source.id)
    if job is None:
        raise ApiError(404, "not_found", f"This source has no import job {job_id!r}.")
    return ImportJobView.of(job)


class _ImportRun:
    """One import in progress: rows become events, published a few hundred at a time.

    Identify rows are gathered into `ingest.identify_chunk` events, one open chunk per
    partition of ingest.v1; any other row is published as its own event. `ImportOrder` keeps
    each person's rows in the file's order, whichever of their ids each row is keyed by.
    """

    def __init__(self, ingest: Ingest, job: ImportJob, receipt: Receipt) -> None:
        self._ingest = ingest
        self._job = job
        self._receipt = receipt
        self._pending: list[Message] = []
        self._pending_rows = 0
        self._max_errors = ingest.settings.ingest_import_error_samples
        self._chunk_size = ingest.settings.ingest_import_chunk_events

    async def run(self, request: Request) -> None:
        settings = self._ingest.settings
        self._order = ImportOrder(
            PartitionChunks(
                await partition_count(self._ingest, topics.INGEST),
                settings.ingest_import_chunk_rows,
                settings.ingest_import_chunk_bytes,
            )
        )
        max_row_bytes = settings.ingest_max_event_bytes
        reader = (
            NdjsonReader(max_row_bytes)
            if self._job.format == "ndjson"
            else CsvReader(max_row_bytes)
        )
        async for chunk in body_chunks(request):
            for row in reader.feed(chunk):
                await self._add(row)
        for row in reader.finish():
            await self._add(row)
        for rows in self._order.finish():
            self._add_chunk(rows)
        await self._flush()

    async def _add(self, row: ImportRow) -> None:
        try:
            message = import_message(row, self._job.source_id, self._receipt)
        except CallRejected as problem:
            self._job.reject(row.number, problem, self._max_errors)
            return
        assert row.call is not None  # a row without a problem has its call
        for going in self._order.add(message, person_ids(row.call)):
            if isinstance(going, list):
                self._add_chunk(going)
            else:
                self._pending.append(going)
                self._pending_rows += 1
        if self._pending_rows >= self._chunk_size:
            await self._flush()

    def _add_chunk(self, rows: list[Message]) -> None:
        self._pending.append(chunk_message(rows, self._receipt))
        self._pending_rows += len(rows)

    async def _flush(self) -> None:
        await publish(self._ingest, self._pending)
        self._job.accepted += self._pending_rows
        self._pending = []
        self._pending_rows = 0


async def _finish(ingest: Ingest, job: ImportJob, status: str) -> None:
    job.status = status
    async with ingest.stores() as store:
        await store.save_import(job)

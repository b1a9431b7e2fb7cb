"""Ingest's queries: sources, write-key lookups and import jobs. Nothing else touches its tables."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import MetaData, Row, Table, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.db import checked_schema
from services.ingest.imports import ImportJob
from services.ingest.models import import_jobs_table, sources_table
from services.ingest.sources import NewWriteKey, Source


class IngestStore:
    """Queries over one session (the caller's transaction) in the service's schema."""

    def __init__(self, session: AsyncSession, schema: str) -> None:
        self._session = session
        self._sources, self._jobs = _tables(schema)

    async def add_source(self, source_id: str, name: str, key: NewWriteKey) -> Source:
        statement = (
            insert(self._sources)
            .values(id=source_id, name=name, key_hash=key.key_hash, key_prefix=key.key_prefix)
            .returning(*self._source_columns())
        )
        return _source((await self._session.execute(statement)).one())

    async def sources(self) -> list[Source]:
        statement = select(*self._source_columns()).order_by(self._sources.c.created_at)
        return [_source(row) for row in await self._session.execute(statement)]

    async def source_by_key_hash(self, key_hash: str) -> Source | None:
        statement = select(*self._source_columns()).where(self._sources.c.key_hash == key_hash)
        row = (await self._session.execute(statement)).one_or_none()
        return None if row is None else _source(row)

    async def set_enabled(self, source_id: str, enabled: bool) -> Source | None:
        statement = (
            update(self._sources)
            .where(self._sources.c.id == source_id)
            .values(enabled=enabled)
            .returning(*self._source_columns())
        )
        row = (await self._session.execute(statement)).one_or_none()
        return None if row is None else _source(row)

    async def delete_source(self, source_id: str) -> bool:
        statement = (
            delete(self._sources)
            .where(self._sources.c.id == source_id)
            .returning(self._sources.c.id)
        )
        return (await self._session.execute(statement)).first() is not None

    async def start_import(self, job: ImportJob) -> None:
        statement = (
            insert(self._jobs)
            .values(id=job.id, source_id=job.source_id, format=job.format, status=job.status)
            .returning(self._jobs.c.created_at)
        )
        job.created_at = (await self._session.execute(statement)).scalar_one()

    async def save_import(self, job: ImportJob) -> None:
        """Record the job's counts and status; a finished job gets its finishing time."""
        finished = {"finished_at": func.now()} if job.status != "running" else {}
        statement = (
            update(self._jobs)
            .where(self._jobs.c.id == job.id)
            .values(
                status=job.status,
                accepted=job.accepted,
                rejected=job.rejected,
                errors=job.errors,
                **finished,
            )
            .returning(self._jobs.c.finished_at)
        )
        job.finished_at = (await self._session.execute(statement)).scalar_one()

    async def import_job(self, job_id: str, source_id: str) -> ImportJob | None:
        """A job of this source; another source's job is as good as missing."""
        jobs = self._jobs
        statement = select(jobs).where(jobs.c.id == job_id, jobs.c.source_id == source_id)
        row = (await self._session.execute(statement)).one_or_none()
        if row is None:
            return None
        return ImportJob(
            id=row.id,
            source_id=row.source_id,
            format=row.format,
            status=row.status,
            accepted=row.accepted,
            rejected=row.rejected,
            errors=list(row.errors),
            created_at=row.created_at,
            finished_at=row.finished_at,
        )

    def _source_columns(self) -> list[Any]:
        c = self._sources.c
        return [c.id, c.name, c.key_prefix, c.enabled, c.created_at]


@cache
def _tables(schema: str) -> tuple[Table, Table]:
    """The sources and import jobs tables in `schema`, made once: SQLAlchemy caches each
    statement's compiled form by the tables it names."""
    metadata = MetaData(schema=checked_schema(schema))
    return sources_table(metadata), import_jobs_table(metadata)


def _source(row: Row[Any]) -> Source:
    return Source(
        id=row.id,
        name=row.name,
        key_prefix=row.key_prefix,
        enabled=row.enabled,
        created_at=row.created_at,
    )

"""Ingest's queries: sources, write-key lookups, import jobs, WeChat accounts and the callback
nonces they have seen. Nothing else touches its tables."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import MetaData, Row, Table, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as upsert
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.db import checked_schema
from libs.common.retention import Retained, batched_delete, older_than
from libs.common.store import schema_statement
from services.ingest.imports import ImportJob
from services.ingest.models import (
    import_jobs_table,
    sources_table,
    wechat_accounts_table,
    wechat_nonces_table,
)
from services.ingest.sources import NewWriteKey, Source
from services.ingest.wechat import WechatAccount

_FORGET_NONCES = batched_delete("wechat_nonces", older_than("seen_at"))


class IngestStore:
    """Queries over one session (the caller's transaction) in the service's schema."""

    def __init__(self, session: AsyncSession, schema: str) -> None:
        self._session = session
        self._schema = checked_schema(schema)
        self._sources, self._jobs, self._accounts, self._nonces = _tables(schema)

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

    async def source_exists(self, source_id: str) -> bool:
        statement = select(self._sources.c.id).where(self._sources.c.id == source_id)
        return (await self._session.execute(statement)).first() is not None

    async def save_wechat_account(
        self, app_id: str, source_id: str, token: str, encoding_aes_key: str | None
    ) -> WechatAccount:
        values = {"source_id": source_id, "token": token, "encoding_aes_key": encoding_aes_key}
        statement = (
            upsert(self._accounts)
            .values(app_id=app_id, **values)
            .on_conflict_do_update(
                index_elements=[self._accounts.c.app_id], set_={**values, "updated_at": func.now()}
            )
            .returning(*self._accounts.c)
        )
        return _account((await self._session.execute(statement)).one())

    async def wechat_account(self, app_id: str) -> WechatAccount | None:
        statement = select(self._accounts).where(self._accounts.c.app_id == app_id)
        row = (await self._session.execute(statement)).one_or_none()
        return None if row is None else _account(row)

    async def wechat_accounts(self) -> list[WechatAccount]:
        statement = select(self._accounts).order_by(self._accounts.c.app_id)
        return [_account(row) for row in await self._session.execute(statement)]

    async def delete_wechat_account(self, app_id: str) -> bool:
        statement = (
            delete(self._accounts)
            .where(self._accounts.c.app_id == app_id)
            .returning(self._accounts.c.app_id)
        )
        return (await self._session.execute(statement)).first() is not None

    async def first_sight_of_nonce(self, app_id: str, timestamp: int, nonce: str) -> bool:
        """Whether this callback's (timestamp, nonce) is new: False for a replay (on any
        replica: the row is shared; a concurrent copy waits for this transaction)."""
        statement = (
            upsert(self._nonces)
            .values(app_id=app_id, timestamp=timestamp, nonce=nonce)
            .on_conflict_do_nothing()
            .returning(self._nonces.c.nonce)
        )
        return (await self._session.execute(statement)).first() is not None

    async def forget_nonces(self, older_than_seconds: float, limit: int) -> int:
        result: Any = await self._session.execute(
            schema_statement(_FORGET_NONCES, self._schema),
            {"seconds": older_than_seconds, "limit": limit},
        )
        return int(result.rowcount or 0)

    def _source_columns(self) -> list[Any]:
        c = self._sources.c
        return [c.id, c.name, c.key_prefix, c.enabled, c.created_at]


@cache
def _tables(schema: str) -> tuple[Table, Table, Table, Table]:
    """The sources, import jobs, WeChat accounts and nonces tables in `schema`, made once:
    SQLAlchemy caches each statement's compiled form by the tables it names."""
    metadata = MetaData(schema=checked_schema(schema))
    return (
        sources_table(metadata),
        import_jobs_table(metadata),
        wechat_accounts_table(metadata),
        wechat_nonces_table(metadata),
    )


def _account(row: Row[Any]) -> WechatAccount:
    return WechatAccount(
        app_id=row.app_id,
        source_id=row.source_id,
        token=row.token,
        encoding_aes_key=row.encoding_aes_key,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def wechat_nonces_retained(schema: str, keep_seconds: float) -> Retained:
    """Callback nonces kept `keep_seconds` after they were seen: past the replay window, a
    replayed callback is refused by its timestamp."""
    return Retained(
        "wechat nonces",
        lambda session, limit: IngestStore(session, schema).forget_nonces(keep_seconds, limit),
    )


def _source(row: Row[Any]) -> Source:
    return Source(
        id=row.id,
        name=row.name,
        key_prefix=row.key_prefix,
        enabled=row.enabled,
        created_at=row.created_at,
    )

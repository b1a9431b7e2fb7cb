"""What every service's store shares: queries over the caller's session, in the service's schema.

A store's SQL names its tables `{s}.<table>`; the schema is checked once and put in, and each
statement is built once per schema (`text()` parses the SQL for its bind parameters).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.db import checked_schema


@functools.lru_cache(maxsize=1024)
def schema_statement(sql: str, schema: str) -> TextClause:
    """The statement with `{s}` replaced by the schema, built once for each pair."""
    return text(sql.replace("{s}", schema))


class SchemaStore:
    """Queries over one session (the caller's transaction) in one service's schema."""

    def __init__(self, session: AsyncSession, schema: str) -> None:
        self._session = session
        self._schema = checked_schema(schema)

    @property
    def session(self) -> AsyncSession:
        return self._session

    @property
    def schema(self) -> str:
        return self._schema

    async def _execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        return await self._session.execute(schema_statement(sql, self._schema), params or {})

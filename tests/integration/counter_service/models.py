"""The counter service's tables."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, MetaData, Table, Text


def counters_table(metadata: MetaData) -> Table:
    return Table(
        "counters",
        metadata,
        Column("profile_id", Text, primary_key=True),
        Column("total", BigInteger, nullable=False),
        Column("events", BigInteger, nullable=False),
    )

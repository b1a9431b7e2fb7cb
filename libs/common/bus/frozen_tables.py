"""The inbox and outbox as the services' migrations created them, frozen.

A migration revision must create what it created the day it was written, whatever `tables.py`
says now: a database made by an older release is upgraded by replaying the revisions it has
not run. So the revisions call these, never `tables.py`; a change to the bus tables is a new
revision in each service with a bus, and new functions here beside these (`..._v2`), these
left as they are.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    Text,
    text,
)


def create_bus_tables_v1(schema: str) -> None:
    """The inbox and the outbox of batched rows (decision 0003), as every service's 0001 made
    them."""
    op.create_table(
        "inbox",
        Column("consumer", Text, nullable=False),
        Column("event_id", Text, nullable=False),
        Column("handled_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        PrimaryKeyConstraint("consumer", "event_id", name="inbox_pkey"),
        schema=schema,
    )
    op.create_index("inbox_handled_at", "inbox", ["handled_at"], schema=schema)
    op.create_table(
        "outbox",
        Column("id", BigInteger, Identity(always=True), nullable=False),
        Column("events", Integer, nullable=False),
        Column("messages", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
        PrimaryKeyConstraint("id", name="outbox_pkey"),
        schema=schema,
    )


def drop_bus_tables_v1(schema: str) -> None:
    op.drop_table("outbox", schema=schema)
    op.drop_table("inbox", schema=schema)

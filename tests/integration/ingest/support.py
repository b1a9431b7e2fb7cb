"""Helpers of the ingest tests: admin auth, a created source, and the calls that reached Kafka."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from libs.common import topics
from libs.common.bus.reader import header
from libs.common.bus.record import KafkaRecord
from libs.common.events import Event, IngestIdentifyChunk, decode
from libs.devstack.pytest_plugin import TEST_ADMIN_TOKEN
from libs.devstack.stack import Stack
from tests.integration.support import read_topic

ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
# The one origin the tests' ingest lets browsers call it from (CLOSELOOP_INGEST_CORS_ORIGINS).
SHOP_ORIGIN = "https://shop.example.com"


@dataclass(frozen=True)
class CreatedSource:
    id: str
    write_key: str

    @property
    def auth(self) -> httpx.BasicAuth:
        return httpx.BasicAuth(self.write_key, "")


async def ingested(stack: Stack, message_ids: Iterable[str]) -> dict[str, KafkaRecord]:
    """The records on closeloop.ingest.v1 whose ce_id is one of `message_ids`."""
    wanted = set(message_ids)
    records = await read_topic(stack.kafka_bootstrap, topics.INGEST)
    return {header(r, "ce_id"): r for r in records if header(r, "ce_id") in wanted}


async def imported(stack: Stack, message_ids: Iterable[str]) -> dict[str, Event[Any]]:
    """The calls on closeloop.ingest.v1 whose messageId is one of `message_ids`, whether they
    travelled alone or as rows of an `ingest.identify_chunk` (each then an event of its own,
    with the chunk's key)."""
    wanted = set(message_ids)
    found: dict[str, Event[Any]] = {}
    for record in await read_topic(stack.kafka_bootstrap, topics.INGEST):
        if header(record, "ce_type") == IngestIdentifyChunk.event_type:
            chunk = decode(record.key, record.value, record.headers)
            for row in chunk.data.rows:
                if row.message_id in wanted:
                    found[row.message_id] = Event(row, chunk.key, chunk.source, row.message_id)
        elif header(record, "ce_id") in wanted:
            found[header(record, "ce_id")] = decode(record.key, record.value, record.headers)
    return found


def new_id(label: str = "msg") -> str:
    return f"{label}-{uuid.uuid4().hex}"

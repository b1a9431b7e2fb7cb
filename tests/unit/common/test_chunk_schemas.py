"""An import chunk's rows are the events they stand for: what one accepts, a row accepts."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from contracts.compat import breaking_changes
from contracts.schemas import schema_path
from libs.common.events import (
    BehaviorIdentifiedChunk,
    BehaviorOccurred,
    EventData,
    IngestIdentify,
    IngestIdentifyChunk,
)

CHUNKS = [(IngestIdentifyChunk, IngestIdentify), (BehaviorIdentifiedChunk, BehaviorOccurred)]


def _schema(model: type[EventData]) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_path(model).read_text(encoding="utf-8"))
    return schema


def _row_schema(chunk: type[EventData], single: type[EventData]) -> dict[str, Any]:
    chunk_schema = _schema(chunk)
    assert chunk_schema["properties"]["rows"]["items"] == {"$ref": f"#/$defs/{single.__name__}"}
    return {**chunk_schema["$defs"][single.__name__], "$defs": chunk_schema["$defs"]}


@pytest.mark.parametrize(("chunk", "single"), CHUNKS, ids=lambda m: m.event_type)
def test_a_chunks_row_accepts_exactly_what_its_single_event_accepts(
    chunk: type[EventData], single: type[EventData]
) -> None:
    single_schema, row_schema = _schema(single), _row_schema(chunk, single)
    assert breaking_changes(single_schema, row_schema) == []
    assert breaking_changes(row_schema, single_schema) == []


@pytest.mark.parametrize(("chunk", "single"), CHUNKS, ids=lambda m: m.event_type)
def test_the_single_events_examples_are_rows_of_a_chunk(
    chunk: type[EventData], single: type[EventData]
) -> None:
    examples = _schema(single)["examples"]
    jsonschema.Draft202012Validator(_schema(chunk)).validate({"rows": examples})
    assert len(chunk.model_validate({"rows": examples}).rows) == len(examples)  # type: ignore[attr-defined]

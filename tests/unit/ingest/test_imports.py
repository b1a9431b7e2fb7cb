"""Import files read incrementally into calls: NDJSON lines and CSV rows, whatever the chunking."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from libs.common.bus import Message
from libs.common.bus.chunks import PartitionChunks
from libs.common.bus.producer import partition_of
from libs.common.events import Event, decode
from services.ingest.calls import CallRejected, Receipt
from services.ingest.imports import (
    Column,
    CsvHeaderInvalid,
    CsvReader,
    ImportOrder,
    ImportRow,
    NdjsonReader,
    chunk_message,
    csv_call,
    import_format,
    import_message,
    is_identify,
    parse_csv_header,
    person_ids,
)

RECEIPT = Receipt("src_crm", datetime(2025, 3, 14, tzinfo=UTC))


def _read(reader: NdjsonReader | CsvReader, data: bytes, chunk: int) -> list[ImportRow]:
    def rows() -> Iterator[ImportRow]:
        for start in range(0, len(data), chunk):
            yield from reader.feed(data[start : start + chunk])
        yield from reader.finish()

    return list(rows())


@pytest.mark.parametrize("chunk", [1, 7, 10_000])
def test_ndjson_lines_become_calls_whatever_the_chunks(chunk: int) -> None:
    data = b'{"userId":"u1","event":"a"}\n\n{"userId":"u2","traits":{"x":1}}\r\nnot json\n[1]'
    rows = _read(NdjsonReader(1000), data, chunk)
    assert [row.number for row in rows] == [1, 3, 4, 5]
    assert rows[0].call == {"userId": "u1", "event": "a"}
    assert rows[1].call == {"userId": "u2", "traits": {"x": 1}}
    assert rows[2].problem is not None and rows[3].problem is not None


def test_ndjson_line_over_the_limit_is_rejected_without_being_kept() -> None:
    data = b'{"userId":"u1","event":"a"}\n{"userId":"' + b"x" * 500 + b'"}\n{"userId":"u3"}\n'
    rows = _read(NdjsonReader(100), data, 16)
    assert [row.number for row in rows] == [1, 2, 3]
    assert rows[1].problem is not None and "larger than 100 bytes" in rows[1].problem.reason
    assert rows[2].call == {"userId": "u3"}


def test_csv_header_maps_plain_and_nested_columns_with_types() -> None:
    columns = parse_csv_header(
        ["\ufefftype", "userId", "properties.revenue:number", "traits.vip:boolean"]
    )
    assert columns == [
        Column("type", None, "type"),
        Column("userId", None, "userId"),
        Column("properties.revenue:number", "properties", "revenue", "number"),
        Column("traits.vip:boolean", "traits", "vip", "boolean"),
    ]


@pytest.mark.parametrize("header", ["email", "properties.", "traits.x:date", "userId,userId"])
def test_csv_header_with_an_unknown_column_is_refused(header: str) -> None:
    with pytest.raises(CsvHeaderInvalid):
        parse_csv_header(header.split(","))


def test_csv_row_maps_to_a_segment_call_leaving_empty_cells_out() -> None:
    columns = parse_csv_header(
        [
            "type",
            "userId",
            "anonymousId",
            "event",
            "properties.revenue:number",
            "properties.sku",
            "traits.vip:boolean",
        ]
    )
    call = csv_call(columns, ["track", "u1", "", "order_completed", "129.9", "TEA-1", "yes"])
    assert call == {
        "type": "track",
        "userId": "u1",
        "event": "order_completed",
        "properties": {"revenue": 129.9, "sku": "TEA-1"},
        "traits": {"vip": True},
    }


def test_csv_cells_keep_leading_zeros_unless_typed() -> None:
    columns = parse_csv_header(["userId", "traits.zip", "traits.orders:number"])
    assert csv_call(columns, ["u1", "00123", "7"]) == {
        "userId": "u1",
        "traits": {"zip": "00123", "orders": 7},
    }


@pytest.mark.parametrize("cells", [["u1", "x"], ["u1", "nan"], ["u1"]])
def test_csv_bad_cells_or_row_length_are_rejected(cells: list[str]) -> None:
    with pytest.raises(CallRejected):
        csv_call(parse_csv_header(["userId", "properties.n:number"]), cells)


@pytest.mark.parametrize("chunk", [1, 5, 10_000])
def test_csv_records_may_span_lines_and_are_numbered_by_their_first_line(chunk: int) -> None:
    data = b'userId,traits.note\r\nu1,"two\nlines"\r\nu2,plain\n\nu3,"say ""hi"""\n'
    rows = _read(CsvReader(1000), data, chunk)
    assert [(row.number, row.call) for row in rows] == [
        (2, {"userId": "u1", "traits": {"note": "two\nlines"}}),
        (4, {"userId": "u2", "traits": {"note": "plain"}}),
        (6, {"userId": "u3", "traits": {"note": 'say "hi"'}}),
    ]


def test_csv_with_a_bad_header_stops_the_import() -> None:
    with pytest.raises(CsvHeaderInvalid) as raised:
        _read(CsvReader(1000), b"userId,shoe_size\nu1,42\n", 100)
    assert raised.value.column == "shoe_size"


def import_event(row: ImportRow, source_id: str, receipt: Receipt) -> Event[Any]:
    message = import_message(row, source_id, receipt)
    return decode(message.key, message.value, message.headers)


def test_import_row_defaults_to_track_with_an_event_and_identify_without() -> None:
    track = import_event(ImportRow(1, b"a", call={"userId": "u", "event": "e"}), "src", RECEIPT)
    identify = import_event(ImportRow(2, b"b", call={"userId": "u"}), "src", RECEIPT)
    assert (track.type, identify.type) == ("ingest.track", "ingest.identify")


def test_import_row_without_message_id_gets_one_that_repeats_with_the_same_row() -> None:
    row = ImportRow(1, b'{"userId":"u"}', call={"userId": "u"})
    first = import_event(row, "src", RECEIPT)
    again = import_event(ImportRow(9, b'{"userId":"u"}\r', call={"userId": "u"}), "src", RECEIPT)
    other_source = import_event(row, "src_other", RECEIPT)
    assert first.id == again.id != other_source.id
    assert first.id.startswith("import-")


def test_import_format_follows_the_content_type() -> None:
    assert import_format("application/x-ndjson") == "ndjson"
    assert import_format("text/csv; charset=utf-8") == "csv"
    assert import_format("application/json") is None
    assert import_format(None) is None


def test_identify_rows_travel_as_one_chunk_event_that_repeats_with_the_same_rows() -> None:
    rows = [
        import_message(
            ImportRow(n, f"u{n},gold".encode(), call={"userId": f"u{n}"}), "src", RECEIPT
        )
        for n in range(1, 4)
    ]
    assert all(is_identify(row) for row in rows)
    message = chunk_message(rows, RECEIPT)
    chunk = decode(message.key, message.value, message.headers)

    assert chunk.type == "ingest.identify_chunk"
    assert message.key == rows[0].key
    assert [row.user_id for row in chunk.data.rows] == ["u1", "u2", "u3"]
    assert [row.message_id for row in chunk.data.rows] == [
        import_event(
            ImportRow(n, f"u{n},gold".encode(), call={"userId": f"u{n}"}), "src", RECEIPT
        ).id
        for n in range(1, 4)
    ]
    assert chunk_message(rows, RECEIPT).headers == message.headers
    assert chunk_message(rows[::-1], RECEIPT).headers != message.headers


def test_a_track_row_is_not_chunked() -> None:
    row = ImportRow(1, b"a", call={"userId": "u", "event": "order_completed"})
    assert not is_identify(import_message(row, "src", RECEIPT))


PARTITIONS = 12
# A user id whose partition is not the first, so another id can go to an earlier one.
USER = "user-7"


def _partition(key: str) -> int:
    return partition_of(key.encode(), PARTITIONS)


def _apart(first: str) -> str:
    """An id whose key goes to a lower partition than `first`'s: its chunk would close first."""
    return next(f"anon-{n}" for n in range(200) if _partition(f"anon-{n}") < _partition(first))


def _row(number: int, call: dict[str, Any]) -> tuple[Message, frozenset[str]]:
    row = ImportRow(number, f"row {number}".encode(), call=call)
    return import_message(row, "src", RECEIPT), person_ids(call)


def _published(order: ImportOrder, *rows: tuple[Message, frozenset[str]]) -> list[list[int]]:
    """What goes out, as the row numbers of each message or chunk, in order."""
    out = [going for message, ids in rows for going in order.add(message, ids)]
    out.extend(order.finish())
    numbers = {id(message): n for n, (message, _) in enumerate(rows, start=1)}
    return [
        [numbers[id(m)] for m in going] if isinstance(going, list) else [numbers[id(going)]]
        for going in out
    ]


def test_a_track_keyed_by_an_anonymous_id_follows_the_identify_that_named_it() -> None:
    anonymous = _apart(USER)
    order = ImportOrder(PartitionChunks(PARTITIONS, max_rows=500, max_size=1 << 20))
    identify = _row(1, {"userId": USER, "anonymousId": anonymous})
    track = _row(2, {"anonymousId": anonymous, "event": "order_completed"})
    other = _row(3, {"userId": "someone-else"})

    assert _published(order, identify, track, other) == [[1], [2], [3]]


def test_an_identify_keyed_by_an_anonymous_id_follows_the_identify_that_named_it() -> None:
    anonymous = _apart(USER)
    order = ImportOrder(PartitionChunks(PARTITIONS, max_rows=500, max_size=1 << 20))
    named = _row(1, {"userId": USER, "anonymousId": anonymous})
    later = _row(2, {"anonymousId": anonymous, "traits": {"plan": "gold"}})

    published = _published(order, named, later)

    assert published.index([1]) < published.index([2])


def test_rows_of_different_people_keep_sharing_their_partitions_chunks() -> None:
    order = ImportOrder(PartitionChunks(1, max_rows=500, max_size=1 << 20))
    rows = [_row(n, {"userId": f"u{n}"}) for n in range(1, 5)]

    assert _published(order, *rows) == [[1, 2, 3, 4]]

"""Bulk imports: NDJSON and CSV read incrementally, row by row, into Segment calls."""

from __future__ import annotations

import csv
import hashlib
import math
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

import orjson

from libs.common.bus import Message
from libs.common.bus.chunks import PartitionChunks
from libs.common.events import IngestIdentify, IngestIdentifyChunk
from libs.common.events.envelope import attribute_headers
from libs.common.limits import loads
from services.ingest.calls import SOURCE, CallRejected, Receipt, call_kind, to_message

ImportFormat = Literal["ndjson", "csv"]

# Columns that map one to one onto a Segment field of the same name.
PLAIN_COLUMNS: Final = frozenset(
    {
        "type",
        "userId",
        "anonymousId",
        "event",
        "timestamp",
        "messageId",
        "groupId",
        "previousId",
        "name",
        "category",
    }
)
NESTED_COLUMNS: Final = ("properties", "traits", "context")
CELL_TYPES: Final = ("string", "number", "boolean")
_TRUE: Final = frozenset({"true", "1", "yes"})
_FALSE: Final = frozenset({"false", "0", "no"})


@dataclass(frozen=True)
class ImportRow:
    """One row of an import: its call, or why it could not be read; `number` counts from 1."""

    number: int
    text: bytes
    call: Mapping[str, Any] | None = None
    problem: CallRejected | None = None


@dataclass(frozen=True)
class Column:
    """A CSV column: a plain Segment field, or `properties.<name>` / `traits.<name>` with a type."""

    header: str
    parent: str | None
    name: str
    cell_type: str = "string"


class CsvHeaderInvalid(ValueError):
    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column = column


def import_message(row: ImportRow, source_id: str, receipt: Receipt) -> Message:
    """The event an import row becomes, as its Kafka message; the type defaults to track with
    an event, else identify.

    A row without a messageId gets one derived from the source and the row's text, so importing
    the same file twice yields duplicates downstream recognises, not twice the events.
    """
    if row.problem is not None:
        raise row.problem
    assert row.call is not None
    call = dict(row.call)
    call.setdefault("messageId", _row_message_id(source_id, row.text))
    kind = call_kind(call, default="track" if call.get("event") is not None else "identify")
    return to_message(kind, call, receipt)


def is_identify(message: Message) -> bool:
    """Whether an import row's message is an identify call, which travels in a chunk."""
    return message.event_type == IngestIdentify.event_type


def chunk_message(rows: Sequence[Message], receipt: Receipt) -> Message:
    """Identify rows' messages, all bound for one partition, as one `ingest.identify_chunk`.

    The value is the rows' own values in a list, as `ingest.identify` carries each; the key is
    the first row's, which goes to the same partition as every other row's. The chunk's id is
    derived from its rows' ids, so the same rows chunked again are the same event.
    """
    row_ids = [_event_id(row) for row in rows]
    digest = hashlib.sha256("\n".join(row_ids).encode()).hexdigest()
    value = b'{"rows":[' + b",".join(row.value or b"" for row in rows) + b"]}"
    headers = attribute_headers(
        IngestIdentifyChunk.event_type,
        IngestIdentifyChunk.event_version,
        f"import-chunk-{digest[:40]}",
        SOURCE,
        receipt.received_at.isoformat(),
        receipt.traceparent,
    )
    return Message(rows[0].topic, rows[0].key, value, headers, IngestIdentifyChunk.event_type)


# The fields that name a person: rows sharing one are one person's, however each is keyed.
_PERSON_IDS: Final = ("userId", "anonymousId", "previousId")


def person_ids(call: Mapping[str, Any]) -> frozenset[str]:
    """The ids a call names (user, anonymous, previous)."""
    return frozenset(str(value) for name in _PERSON_IDS if (value := call.get(name)))


class ImportOrder:
    """An import's rows in the order they are published.

    Identify rows gather into one open chunk per partition (`PartitionChunks`). Any other row
    goes out alone, after its own partition's open chunk. Every row, chunked or not, first
    closes the open chunks of other partitions that hold a row naming one of its ids. A track
    keyed by an anonymous id then follows the identify, keyed by the user id, that named the
    same anonymous id. Without that, the identify could wait in its chunk for thousands of rows
    while the track went ahead.
    """

    def __init__(self, chunks: PartitionChunks[Message]) -> None:
        self._chunks = chunks
        self._partition_naming: dict[str, int] = {}
        self._ids_in: dict[int, set[str]] = {}

    def add(self, message: Message, ids: frozenset[str]) -> list[Message | list[Message]]:
        """What goes out now, in order: closed chunks (lists of rows) and single rows."""
        own = self._chunks.partition(message.key or b"")
        out: list[Message | list[Message]] = []
        for partition in sorted(self._partitions_naming(ids, besides=own)):
            out.extend(self._close(partition))
        if is_identify(message):
            closed = self._chunks.add(message.key or b"", message, len(message.value or b""))
            if closed:
                self._forget(own)
            out.extend(closed)
            self._name(own, ids)
        else:
            out.extend(self._close(own))
            out.append(message)
        return out

    def finish(self) -> list[list[Message]]:
        """Every open chunk, closed."""
        self._partition_naming.clear()
        self._ids_in.clear()
        return self._chunks.close_all()

    def _partitions_naming(self, ids: frozenset[str], besides: int) -> set[int]:
        found = (self._partition_naming.get(person) for person in ids)
        return {partition for partition in found if partition is not None and partition != besides}

    def _close(self, partition: int) -> list[list[Message]]:
        rows = self._chunks.close(partition)
        self._forget(partition)
        return [] if rows is None else [rows]

    def _name(self, partition: int, ids: frozenset[str]) -> None:
        self._ids_in.setdefault(partition, set()).update(ids)
        for person in ids:
            self._partition_naming[person] = partition

    def _forget(self, partition: int) -> None:
        for person in self._ids_in.pop(partition, ()):
            if self._partition_naming.get(person) == partition:
                del self._partition_naming[person]


def _event_id(message: Message) -> str:
    for name, value in message.headers:
        if name == "ce_id":
            return value.decode()
    raise ValueError("an event's message has a ce_id header")


def _row_message_id(source_id: str, text: bytes) -> str:
    digest = hashlib.sha256(source_id.encode() + b"\n" + text.strip()).hexdigest()
    return f"import-{digest[:40]}"


class _Lines:
    """Splits a byte stream into lines as chunks arrive, never holding more than `limit` bytes.

    A line longer than `limit` is dropped as it streams past and reported as None.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._pending = bytearray()
        self._too_long = False

    def feed(self, chunk: bytes) -> Iterator[bytes | None]:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            yield self._take(chunk[start:end])
            start = end + 1
        self._keep(chunk[start:])

    def finish(self) -> Iterator[bytes | None]:
        if self._pending or self._too_long:
            yield self._take(b"")

    def _keep(self, part: bytes) -> None:
        if self._too_long:
            return
        self._pending += part
        if len(self._pending) > self._limit:
            self._too_long = True
            self._pending.clear()

    def _take(self, tail: bytes) -> bytes | None:
        self._keep(tail)
        line = None if self._too_long else bytes(self._pending).rstrip(b"\r")
        self._pending.clear()
        self._too_long = False
        return line


class NdjsonReader:
    """One Segment call per line; blank lines are skipped but counted."""

    def __init__(self, max_row_bytes: int) -> None:
        self._lines = _Lines(max_row_bytes)
        self._max_row_bytes = max_row_bytes
        self._number = 0

    def feed(self, chunk: bytes) -> Iterator[ImportRow]:
        for line in self._lines.feed(chunk):
            yield from self._row(line)

    def finish(self) -> Iterator[ImportRow]:
        for line in self._lines.finish():
            yield from self._row(line)

    def _row(self, line: bytes | None) -> Iterator[ImportRow]:
        self._number += 1
        if line is None:
            yield _too_long(self._number, self._max_row_bytes)
            return
        if not line.strip():
            return
        try:
            call = loads(line)
        except orjson.JSONDecodeError as error:
            yield ImportRow(self._number, line, problem=CallRejected(None, f"not JSON: {error}"))
            return
        if not isinstance(call, dict):
            problem = CallRejected(None, "a line must be a JSON object")
            yield ImportRow(self._number, line, problem=problem)
            return
        yield ImportRow(self._number, line, call=call)


class CsvReader:
    """A header row, then one call per record; a quoted cell may span lines.

    `number` is the record's first line in the file, so an error points where a person looks.
    """

    def __init__(self, max_row_bytes: int) -> None:
        self._lines = _Lines(max_row_bytes)
        self._max_row_bytes = max_row_bytes
        self._columns: list[Column] | None = None
        self._line_number = 0
        self._record: list[bytes] = []
        self._record_start = 0
        self._record_size = 0

    def feed(self, chunk: bytes) -> Iterator[ImportRow]:
        for line in self._lines.feed(chunk):
            yield from self._line(line)

    def finish(self) -> Iterator[ImportRow]:
        for line in self._lines.finish():
            yield from self._line(line)
        if self._record:
            # An unterminated quote at the end: the record is what it is.
            yield from self._complete_record()

    def _line(self, line: bytes | None) -> Iterator[ImportRow]:
        self._line_number += 1
        if not self._record:
            self._record_start = self._line_number
        if line is None or self._record_size + len(line) > self._max_row_bytes:
            self._record, self._record_size = [], 0
            if self._columns is None:
                raise CsvHeaderInvalid("", f"the header is larger than {self._max_row_bytes} bytes")
            yield _too_long(self._record_start, self._max_row_bytes)
            return
        self._record.append(line)
        self._record_size += len(line) + 1
        # A record ends where its double quotes balance: a quoted newline leaves them unbalanced.
        if sum(part.count(b'"') for part in self._record) % 2 == 0:
            yield from self._complete_record()

    def _complete_record(self) -> Iterator[ImportRow]:
        text = b"\n".join(self._record)
        self._record, self._record_size = [], 0
        number = self._record_start
        try:
            cells = next(csv.reader([text.decode("utf-8")]), [])
        except (UnicodeDecodeError, csv.Error) as error:
            if self._columns is None:
                raise CsvHeaderInvalid(
                    "", f"the header is not a UTF-8 CSV record: {error}"
                ) from None
            yield ImportRow(number, text, problem=CallRejected(None, f"not a CSV record: {error}"))
            return
        if self._columns is None:
            if not any(cells):
                raise CsvHeaderInvalid("", "the first line must name the columns")
            self._columns = parse_csv_header(cells)
            return
        if not any(cells):
            return
        try:
            yield ImportRow(number, text, call=csv_call(self._columns, cells))
        except CallRejected as problem:
            yield ImportRow(number, text, problem=problem)


def parse_csv_header(cells: Sequence[str]) -> list[Column]:
    """The columns a header names; raises CsvHeaderInvalid for a column ingest cannot map."""
    # Spreadsheets save UTF-8 CSV with a byte-order mark, which lands in the first cell.
    columns = [_column(cell.strip().lstrip("\ufeff")) for cell in cells]
    headers = [column.header for column in columns]
    for header in headers:
        if headers.count(header) > 1:
            raise CsvHeaderInvalid(header, f"the column {header!r} appears twice")
    return columns


def _column(header: str) -> Column:
    if header in PLAIN_COLUMNS:
        return Column(header, None, header)
    parent, dot, rest = header.partition(".")
    name, _, cell_type = rest.rpartition(":") if ":" in rest else (rest, "", "string")
    if parent not in NESTED_COLUMNS or not dot or not name:
        raise CsvHeaderInvalid(
            header,
            f"unknown column {header!r}: use {', '.join(sorted(PLAIN_COLUMNS))}, "
            "or properties.<name>, traits.<name>, context.<name>",
        )
    if cell_type not in CELL_TYPES:
        raise CsvHeaderInvalid(
            header, f"the type of {header!r} must be one of {', '.join(CELL_TYPES)}"
        )
    return Column(header, parent, name, cell_type)


def csv_call(columns: Sequence[Column], cells: Sequence[str]) -> dict[str, Any]:
    """A CSV record as a Segment call; empty cells are left out."""
    if len(cells) != len(columns):
        raise CallRejected(None, f"the row has {len(cells)} cells, the header {len(columns)}")
    call: dict[str, Any] = {}
    for column, cell in zip(columns, cells, strict=True):
        if cell == "":
            continue
        if column.parent is None:
            call[column.name] = cell
        else:
            call.setdefault(column.parent, {})[column.name] = _cell_value(column, cell)
    return call


def _cell_value(column: Column, cell: str) -> Any:
    if column.cell_type == "number":
        return _number(column.header, cell)
    if column.cell_type == "boolean":
        lowered = cell.strip().lower()
        if lowered not in _TRUE | _FALSE:
            raise CallRejected(column.header, f"{column.header} must be true or false")
        return lowered in _TRUE
    return cell


def _number(header: str, cell: str) -> int | float:
    try:
        return int(cell)
    except ValueError:
        pass
    try:
        number = float(cell)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise CallRejected(header, f"{header} must be a finite number")
    return number


def _too_long(number: int, limit: int) -> ImportRow:
    return ImportRow(
        number, b"", problem=CallRejected(None, f"the row is larger than {limit} bytes")
    )


@dataclass
class ImportJob:
    """An import's progress and outcome: counts, and the first `max_errors` rows rejected."""

    id: str
    source_id: str
    format: ImportFormat
    status: str = "running"
    accepted: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    created_at: datetime | None = None
    finished_at: datetime | None = None

    def reject(self, row_number: int, problem: CallRejected, max_errors: int) -> None:
        self.rejected += 1
        if len(self.errors) < max_errors:
            self.errors.append(
                {"row": row_number, "field": problem.field, "reason": problem.reason}
            )


def new_import_id() -> str:
    return f"imp_{secrets.token_hex(8)}"


_FORMATS: Final[Mapping[str, ImportFormat]] = {
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/x-jsonlines": "ndjson",
    "text/csv": "csv",
    "application/csv": "csv",
}


def import_format(content_type: str | None) -> ImportFormat | None:
    """The import format a Content-Type names, parameters such as `charset` aside."""
    media_type = (content_type or "").partition(";")[0].strip().lower()
    return _FORMATS.get(media_type)

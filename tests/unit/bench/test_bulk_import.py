"""The bulk import benchmark's CSV, read back by ingest's own import reader."""

from __future__ import annotations

import math

from bench.bulk_import import CSV_HEADER, Imported, customers_csv, figures
from services.ingest.imports import CsvReader


def test_every_row_is_a_new_customer_identified_with_the_four_traits() -> None:
    body = customers_csv(1_000, "run1")
    reader = CsvReader(64 * 1024)
    rows = [*reader.feed(body), *reader.finish()]
    assert len(rows) == 1_000
    assert all(row.problem is None and row.call is not None for row in rows)
    calls = [row.call for row in rows if row.call is not None]
    assert len({call["userId"] for call in calls}) == 1_000
    assert {frozenset(call["traits"]) for call in calls} == {
        frozenset({"email", "first_name", "plan", "country"})
    }
    assert all("event" not in call for call in calls)  # so each row is an identify
    assert body.splitlines()[0].decode() == ",".join(CSV_HEADER)


def test_the_end_to_end_rate_carries_the_target_and_profile_rate_beside_it() -> None:
    done = Imported("import", 100_000, 8.0, accepted_seconds=4.0, profile_seconds=5.0)
    by_name = {figure.name: figure for figure in figures([done], None)}  # type: ignore[arg-type]
    end_to_end = by_name["end to end, upload → segment members"]
    assert end_to_end.value == 12_500 and end_to_end.met is True
    assert by_name["in profile's store"].value == 20_000
    assert by_name["file accepted"].value == 25_000
    slow = Imported("import", 100_000, 20.0)
    assert figures([slow], None)[2].met is False  # type: ignore[arg-type]
    assert math.isnan(slow.profile_per_second)

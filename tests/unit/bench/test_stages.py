"""The loop's per-stage latencies, from the records each service published."""

from __future__ import annotations

import math
import time
import uuid

from bench.stages import Published, made_at, stage_latencies
from libs.common.events.envelope import new_event_id


def _published(*records: tuple[str, str, float, str | None]) -> dict[str, list[Published]]:
    stages: dict[str, list[Published]] = {
        name: [] for name in ("ingest", "profile", "journey", "content", "dispatch")
    }
    for stage, key, at, user_id in records:
        stages[stage].append(Published(key, at, user_id=user_id))
    return stages


def test_each_stage_is_the_time_from_the_record_consumed_to_the_record_made() -> None:
    published = _published(
        ("ingest", "u1", 100.010, None),
        ("profile", "prf_1", 100.030, "u1"),
        ("journey", "prf_1", 100.060, None),
        ("content", "prf_1", 100.100, None),
        ("dispatch", "prf_1", 100.150, None),
        ("dispatch", "prf_1", 109.000, None),  # a republish: the first record counts
    )
    stages = {stage.name: stage for stage in stage_latencies({"u1": 100.0}, published)}
    assert [round(stages[name].p50_ms) for name in stages] == [10, 20, 30, 40, 50, 150]
    assert all(stage.count == 1 for stage in stages.values())


def test_a_track_that_stopped_on_the_way_counts_in_the_stages_it_passed() -> None:
    published = _published(
        ("ingest", "u1", 100.010, None),
        ("ingest", "u2", 100.020, None),
        ("profile", "prf_1", 100.030, "u1"),
        ("profile", "prf_2", 100.050, "u2"),
        ("journey", "prf_1", 100.060, None),
        ("content", "prf_1", 100.100, None),
        ("dispatch", "prf_1", 100.150, None),
    )
    stages = stage_latencies({"u1": 100.0, "u2": 100.0}, published)
    assert [stage.count for stage in stages] == [2, 2, 1, 1, 1, 1]
    assert round(stages[1].p99_ms) == 30  # u2's profile stage, the slower of the two


def test_a_stage_no_track_reached_has_no_percentiles() -> None:
    stages = stage_latencies({"u1": 100.0}, _published(("ingest", "u1", 100.010, None)))
    assert stages[0].count == 1
    assert stages[1].count == 0
    assert math.isnan(stages[1].p50_ms)


def test_a_stage_splits_where_the_event_id_says_when_the_handler_made_the_event() -> None:
    published = _published(("ingest", "u1", 100.010, None))
    published["profile"] = [Published("prf_1", 100.050, made_at=100.020, user_id="u1")]
    ingest, profile, *_ = stage_latencies({"u1": 100.0}, published)
    assert math.isnan(ingest.to_made_p50_ms)
    assert (round(profile.to_made_p50_ms), round(profile.made_to_published_p50_ms)) == (10, 30)


def test_only_a_version_7_id_tells_when_it_was_made() -> None:
    before = time.time()
    made = made_at(new_event_id())
    assert made is not None
    assert before - 0.001 <= made <= time.time()
    assert made_at(str(uuid.uuid4())) is None
    assert made_at("ajs-next-1f0c7a3e") is None

"""The per-channel token bucket."""

from __future__ import annotations

from services.dispatch.ratelimit import TokenBucket


def test_bucket_allows_its_burst_then_paces_at_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(10.0, burst=2, clock=lambda: now[0])
    assert bucket.wait_time() == 0.0
    assert bucket.wait_time() == 0.0
    assert abs(bucket.wait_time() - 0.1) < 1e-9
    now[0] += 0.1
    assert bucket.wait_time() == 0.0

"""Write keys: made random, stored as a hash, read from Basic auth, remembered briefly."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

from services.ingest.sources import (
    WRITE_KEY_PREFIX,
    Source,
    WriteKeyCache,
    basic_auth_username,
    hash_write_key,
    new_write_key,
)

SOURCE = Source("src_1", "web", "clwk_abcdef", True, datetime(2025, 1, 1, tzinfo=UTC))


def test_new_write_key_is_stored_as_its_sha256_and_shown_by_a_short_prefix() -> None:
    made = new_write_key()
    assert made.key.startswith(WRITE_KEY_PREFIX) and len(made.key) > 40
    assert made.key_hash == hashlib.sha256(made.key.encode()).hexdigest()
    assert made.key.startswith(made.key_prefix) and len(made.key_prefix) < 16
    assert new_write_key().key != made.key


def test_hash_is_stable() -> None:
    assert hash_write_key("clwk_x") == hash_write_key("clwk_x") != hash_write_key("clwk_y")


def test_basic_auth_username_is_the_write_key() -> None:
    header = "Basic " + base64.b64encode(b"clwk_key:").decode()
    assert basic_auth_username(header) == "clwk_key"


def test_malformed_or_other_authorization_yields_no_key() -> None:
    for header in (
        None,
        "",
        "Bearer clwk_key",
        "Basic !!!",
        "Basic " + base64.b64encode(b":").decode(),
    ):
        assert basic_auth_username(header) is None


def test_cache_remembers_lookups_until_they_expire() -> None:
    now = [100.0]
    cache = WriteKeyCache(5.0, clock=lambda: now[0])
    cache.put("known", SOURCE)
    cache.put("unknown", None)
    assert cache.get("known") == (True, SOURCE)
    assert cache.get("unknown") == (True, None)
    now[0] += 5.0
    assert cache.get("known") == (False, None)


def test_forgetting_a_source_drops_its_cached_lookup() -> None:
    cache = WriteKeyCache(5.0)
    cache.put("known", SOURCE)
    cache.forget_source("src_1")
    assert cache.get("known") == (False, None)


def test_cache_stays_bounded_whatever_keys_callers_send() -> None:
    cache = WriteKeyCache(5.0, max_entries=3)
    for index in range(10):
        cache.put(f"random-{index}", None)
    assert sum(cache.get(f"random-{index}")[0] for index in range(10)) <= 3


def test_zero_ttl_caches_nothing() -> None:
    cache = WriteKeyCache(0.0)
    cache.put("known", SOURCE)
    assert cache.get("known") == (False, None)

"""Write keys: made random, stored as a hash, read from Basic auth, remembered briefly."""

from __future__ import annotations

import asyncio
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


class _Lookups:
    """A database stand-in for the cache's loader: counts calls, answers when released."""

    def __init__(self, answer: Source | None = SOURCE, error: Exception | None = None) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self._answer = answer
        self._error = error

    async def load(self, key_hash: str) -> Source | None:
        self.calls += 1
        await self.release.wait()
        if self._error is not None:
            raise self._error
        return self._answer


async def test_callers_that_miss_together_share_one_lookup_and_its_answer() -> None:
    cache, lookups = WriteKeyCache(5.0), _Lookups()
    callers = [asyncio.create_task(cache.lookup("known", lookups.load)) for _ in range(50)]
    await asyncio.sleep(0)
    lookups.release.set()
    assert await asyncio.gather(*callers) == [SOURCE] * 50
    assert lookups.calls == 1
    assert cache.get("known") == (True, SOURCE)


async def test_a_failed_lookup_fails_every_waiting_caller_and_is_not_remembered() -> None:
    cache, lookups = WriteKeyCache(5.0), _Lookups(error=ConnectionRefusedError("down"))
    callers = [asyncio.create_task(cache.lookup("known", lookups.load)) for _ in range(3)]
    await asyncio.sleep(0)
    lookups.release.set()
    outcomes = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(outcome, ConnectionRefusedError) for outcome in outcomes)
    assert cache.get("known") == (False, None)
    retried = _Lookups()
    retried.release.set()
    assert await cache.lookup("known", retried.load) == SOURCE


async def test_a_caller_going_away_does_not_cancel_the_lookup_others_wait_on() -> None:
    cache, lookups = WriteKeyCache(5.0), _Lookups()
    leaving = asyncio.create_task(cache.lookup("known", lookups.load))
    staying = asyncio.create_task(cache.lookup("known", lookups.load))
    await asyncio.sleep(0)
    leaving.cancel()
    lookups.release.set()
    assert await staying == SOURCE
    assert lookups.calls == 1


async def test_a_lookup_begun_before_its_source_was_forgotten_is_not_remembered() -> None:
    cache, lookups = WriteKeyCache(5.0), _Lookups()
    caller = asyncio.create_task(cache.lookup("known", lookups.load))
    await asyncio.sleep(0)
    cache.forget_source("src_1")  # disabled meanwhile: the answer in flight may be stale
    lookups.release.set()
    assert await caller == SOURCE
    assert cache.get("known") == (False, None)

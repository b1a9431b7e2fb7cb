"""What every ingest route shares: bodies within limits, write keys, Kafka's acknowledgement."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from aiokafka.errors import KafkaError
from fastapi import Depends, Request

from libs.common.api import StoreTransactions
from libs.common.bus import EventProducer, Message
from libs.common.errors import ApiError
from libs.common.limits import loads
from services.ingest.settings import IngestSettings
from services.ingest.sources import (
    Source,
    WriteKeyCache,
    basic_auth_username,
    hash_write_key,
)
from services.ingest.store import IngestStore

_CHALLENGE = {"WWW-Authenticate": 'Basic realm="closeloop ingest"'}
# How the tracking and import routes, which check the write key themselves, declare it in OpenAPI.
WRITE_KEY_SCHEME = {
    "WriteKey": {
        "type": "http",
        "scheme": "basic",
        "description": "A source's write key as the Basic username, the password empty "
        "(or the body's `writeKey`, as Segment's SDKs may send it).",
    }
}
WRITE_KEY_SECURITY: dict[str, Any] = {"security": [{"WriteKey": []}]}
# Decompressed in steps this size, so a small gzip body cannot expand into memory all at once.
_INFLATE_STEP = 64 * 1024
_RETRY_AFTER_SECONDS = "5"


@dataclass(frozen=True)
class Ingest:
    """The parts of the running service the routes use."""

    settings: IngestSettings
    stores: StoreTransactions[IngestStore]
    producer: EventProducer
    write_keys: WriteKeyCache


def ingest_of(request: Request) -> Ingest:
    ingest = request.app.state.ingest
    assert isinstance(ingest, Ingest)
    return ingest


async def _ingest_dependency(request: Request) -> Ingest:
    # async, so FastAPI calls it on the event loop rather than through its thread pool.
    return ingest_of(request)


IngestDep = Annotated[Ingest, Depends(_ingest_dependency)]


async def body_chunks(request: Request) -> AsyncIterator[bytes]:
    """The body as it arrives, gunzipped when the client compressed it (rudder-sdk-python does
    by default, analytics-python can), and never inflated more than a step ahead of the reader:
    `read_body` stops at its limit, so a gzip bomb costs a 413, not the memory it expands to."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "identity":
        async for chunk in request.stream():
            yield chunk
        return
    if encoding != "gzip":
        raise ApiError(415, "unsupported_encoding", "Send the body plain or gzip-compressed.")
    inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    try:
        async for chunk in request.stream():
            data = chunk
            while data:
                yield inflater.decompress(data, _INFLATE_STEP)
                data = inflater.unconsumed_tail
        yield inflater.flush()
    except zlib.error as error:
        raise ApiError(400, "invalid_gzip", f"The body is not valid gzip: {error}.") from None


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The whole body; 413 as soon as it is known to exceed `limit`, without reading the rest."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(what, limit)
    body = bytearray()
    async for chunk in body_chunks(request):
        body += chunk
        if len(body) > limit:
            raise _too_large(what, limit)
    return bytes(body)


def parse_json(body: bytes) -> Any:
    """The body as JSON, its integers exact (even those ingest then refuses as too large)."""
    try:
        return loads(body)
    except orjson.JSONDecodeError as error:
        raise ApiError(400, "invalid_json", f"The body is not JSON: {error}.") from None


async def authenticate(request: Request, ingest: Ingest, payload: object = None) -> Source:
    """The enabled source whose write key came as the Basic username or the body's `writeKey`."""
    key = basic_auth_username(request.headers.get("authorization"))
    if key is None and isinstance(payload, dict) and isinstance(payload.get("writeKey"), str):
        key = payload["writeKey"]
    if not key:
        raise ApiError(
            401,
            "unauthorized",
            "Send a source's write key as the username of HTTP Basic auth, or as `writeKey`.",
            headers=_CHALLENGE,
        )
    source = await source_for_key(ingest, key)
    if source is None or not source.enabled:
        raise ApiError(
            401, "unauthorized", "The write key is unknown or disabled.", headers=_CHALLENGE
        )
    return source


async def source_for_key(ingest: Ingest, key: str) -> Source | None:
    """The source with this write key, enabled or not; None when there is none."""

    async def load(key_hash: str) -> Source | None:
        async with ingest.stores() as store:
            return await store.source_by_key_hash(key_hash)

    return await ingest.write_keys.lookup(hash_write_key(key), load)


async def publish(ingest: Ingest, messages: Sequence[Message]) -> None:
    """Return once Kafka has acknowledged every message; 503 if it does not, so clients retry.

    A retry is safe: each event's id is the call's messageId, so a copy is a known duplicate.
    """
    if not messages:
        return
    try:
        async with asyncio.timeout(ingest.settings.ingest_publish_timeout_seconds):
            await ingest.producer.publish_messages(messages)
    except (KafkaError, TimeoutError) as error:
        raise _broker_unavailable(error) from None


async def partition_count(ingest: Ingest, topic: str) -> int:
    """How many partitions the topic has, as the producer sees it; 503 if Kafka does not say."""
    try:
        async with asyncio.timeout(ingest.settings.ingest_publish_timeout_seconds):
            return await ingest.producer.partition_count(topic)
    except (KafkaError, TimeoutError) as error:
        raise _broker_unavailable(error) from None


def _broker_unavailable(error: KafkaError | TimeoutError) -> ApiError:
    reason = type(error).__name__ if isinstance(error, TimeoutError) else str(error)
    return ApiError(
        503,
        "broker_unavailable",
        f"Kafka did not acknowledge the events ({reason}); retry later: the messageIds "
        "make a retry a duplicate that is recognised.",
        headers={"Retry-After": _RETRY_AFTER_SECONDS},
    )


def _too_large(what: str, limit: int) -> ApiError:
    return ApiError(413, "too_large", f"{what} is larger than the limit of {limit} bytes.")

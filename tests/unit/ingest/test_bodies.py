"""Request bodies are read within their limit, after gunzipping, whatever the client sends."""

from __future__ import annotations

import gzip

import pytest
from starlette.requests import Request
from starlette.types import Message

from libs.common.errors import ApiError
from services.ingest.gateway import read_body

LIMIT = 32 * 1024


def _request(body: bytes, encoding: str | None = None, chunk: int = 4096) -> Request:
    """A request whose body arrives in `chunk`-byte pieces, as a server passes it on."""
    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]
    messages: list[Message] = [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        for i, piece in enumerate(pieces)
    ]

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    headers = [(b"content-encoding", encoding.encode())] if encoding else []
    return Request({"type": "http", "method": "POST", "headers": headers}, receive)


async def _refused(request: Request) -> ApiError:
    with pytest.raises(ApiError) as raised:
        await read_body(request, LIMIT, "The call")
    return raised.value


async def test_gzip_body_is_read_decompressed() -> None:
    body = b'{"userId": "u", "event": "e"}'
    assert await read_body(_request(gzip.compress(body), "gzip"), LIMIT, "The call") == body


async def test_gzip_bomb_is_a_413_once_the_decompressed_body_passes_the_limit() -> None:
    bomb = gzip.compress(b" " * (16 * 1024 * 1024))  # 16 KB that inflate to 16 MB
    assert len(bomb) < LIMIT
    refused = await _refused(_request(bomb, "gzip"))
    assert (refused.status_code, refused.code) == (413, "too_large")


async def test_decompressed_body_just_within_the_limit_is_read() -> None:
    body = b"x" * LIMIT
    assert await read_body(_request(gzip.compress(body), "gzip"), LIMIT, "The call") == body


async def test_body_that_is_not_gzip_is_a_400() -> None:
    refused = await _refused(_request(b"not gzip at all", "gzip"))
    assert (refused.status_code, refused.code) == (400, "invalid_gzip")


async def test_an_encoding_other_than_gzip_is_a_415() -> None:
    refused = await _refused(_request(b"{}", "br"))
    assert refused.status_code == 415

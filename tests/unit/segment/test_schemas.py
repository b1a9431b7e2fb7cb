"""Segment requests refuse text PostgreSQL cannot store, and cursors that are not the API's."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import ValidationError

from libs.common.errors import ApiError
from services.segment.api import _after
from services.segment.schemas import PreviewRequest, SegmentRequest


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "a\x00b"},
        {"name": "\ud800"},
        {"description": "x\x00"},
        {"conditions": {"tag": "v\x00"}},
        {"conditions": {"all": [{"trait": "plan", "value": ["ok", "\udfff"]}]}},
        {"conditions": {"tag": "vip", "\x00": 1}},
    ],
)
def test_segment_request_refuses_nul_and_lone_surrogates(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match=r"NUL characters or lone surrogates|unicode"):
        SegmentRequest.model_validate({"name": "n", "conditions": {"tag": "vip"}, **fields})


def test_preview_request_refuses_nul_in_conditions() -> None:
    with pytest.raises(ValidationError, match="NUL"):
        PreviewRequest.model_validate({"conditions": {"event": "o\x00"}})


def test_segment_request_keeps_ordinary_unicode() -> None:
    request = SegmentRequest.model_validate({"name": "Kunden 🍵", "conditions": {"tag": "größe"}})
    assert request.conditions == {"tag": "größe"}


@pytest.mark.parametrize("decoded", [b"\x00", b"prf_a\x00", b"\xff\xfe"])
def test_a_cursor_that_decodes_to_nul_or_non_utf8_is_invalid(decoded: bytes) -> None:
    with pytest.raises(ApiError) as raised:
        _after(base64.urlsafe_b64encode(decoded).decode())
    assert (raised.value.status_code, raised.value.field) == (422, "cursor")


def test_a_cursor_the_api_gave_decodes_to_its_profile() -> None:
    assert _after(base64.urlsafe_b64encode(b"prf_01").decode()) == "prf_01"

"""Tracking tokens: what one signs, another verifies; nothing else passes."""

from __future__ import annotations

import pytest

from libs.common.tracking import InvalidToken, TrackingToken, sign, tracking_url, verify

SECRET = "s3cret-for-tests"


def test_a_signed_click_token_verifies_to_its_url() -> None:
    token = TrackingToken("jrn:v1:n:p:1", "click", "https://shop.example.com/p?x=1")
    assert verify(sign(token, SECRET), SECRET) == token


def test_a_token_signed_with_another_secret_is_refused() -> None:
    value = sign(TrackingToken("k", "open"), "other-secret")
    with pytest.raises(InvalidToken):
        verify(value, SECRET)


def test_a_token_pointed_elsewhere_is_refused() -> None:
    value = sign(TrackingToken("k", "click", "https://shop.example.com/"), SECRET)
    body, signature = value.split(".")
    forged = sign(TrackingToken("k", "click", "https://evil.example.net/"), SECRET)
    with pytest.raises(InvalidToken):
        verify(f"{forged.split('.')[0]}.{signature}", SECRET)
    assert verify(f"{body}.{signature}", SECRET).url == "https://shop.example.com/"


@pytest.mark.parametrize("value", ["", "abc", "a.b.c", "!!!.???", "e30.AAAA"])
def test_garbage_is_refused(value: str) -> None:
    with pytest.raises(InvalidToken):
        verify(value, SECRET)


def test_the_link_names_the_action() -> None:
    url = tracking_url("http://t.example/", TrackingToken("k", "unsubscribe"), SECRET)
    assert url.startswith("http://t.example/u/")


def test_signing_without_a_secret_is_an_error() -> None:
    with pytest.raises(ValueError, match="TRACKING_SECRET"):
        sign(TrackingToken("k", "open"), "")

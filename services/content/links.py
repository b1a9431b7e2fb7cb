"""Tracking links: every link of a message becomes a signed click URL, HTML email gets an open
pixel and an unsubscribe link (docs/decisions/0009)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable

# An http(s) href in double or single quotes; unquoted hrefs are left alone (see docs/content.md).
_HREF = re.compile(r"""(\bhref\s*=\s*)(["'])(https?://[^"']+)\2""", re.IGNORECASE)
_TEXT_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)
# Punctuation that ends a sentence rather than the URL: "see https://x.example/a."
_TRAILING = ".,;:!?)]}'\""
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)

ClickUrl = Callable[[str], str]
"""The signed click-tracking URL for a destination."""


def rewrite_html(document: str, click_url: ClickUrl, *, keep_prefix: str) -> str:
    """Every http(s) `href` replaced by its click URL; links under `keep_prefix` are kept."""

    def replace(match: re.Match[str]) -> str:
        destination = html.unescape(match.group(3))
        if destination.startswith(keep_prefix):
            return match.group(0)
        quote = match.group(2)
        return f"{match.group(1)}{quote}{html.escape(click_url(destination))}{quote}"

    return _HREF.sub(replace, document)


def rewrite_text(text: str, click_url: ClickUrl, *, keep_prefix: str) -> str:
    """Every http(s) URL in plain text replaced by its click URL."""

    def replace(match: re.Match[str]) -> str:
        found = match.group(0)
        destination = found.rstrip(_TRAILING)
        if not destination or destination.startswith(keep_prefix):
            return found
        return click_url(destination) + found[len(destination) :]

    return _TEXT_URL.sub(replace, text)


def add_open_pixel(document: str, pixel_url: str) -> str:
    """A 1x1 image loading `pixel_url`, before `</body>` or at the end."""
    pixel = (
        f'<img src="{html.escape(pixel_url)}" width="1" height="1" alt="" '
        'style="display:block;border:0;width:1px;height:1px">'
    )
    return _before_body_end(document, pixel)


def ensure_unsubscribe(document: str, unsubscribe_url: str) -> str:
    """The document, with an unsubscribe link in a footer unless the template placed one."""
    if html.escape(unsubscribe_url) in document or unsubscribe_url in document:
        return document
    footer = (
        '<p style="font-size:12px;color:#888888">'
        f'<a href="{html.escape(unsubscribe_url)}">Unsubscribe</a></p>'
    )
    return _before_body_end(document, footer)


def _before_body_end(document: str, fragment: str) -> str:
    matches = list(_BODY_END.finditer(document))
    if not matches:
        return document + fragment
    at = matches[-1].start()
    return document[:at] + fragment + document[at:]

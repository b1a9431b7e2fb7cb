"""Subscription topics and each person's preference page: the topics, the signed link to the
page, the page itself and the answers its form sends. Pure: no I/O.

A preference link names a profile and when it expires, signed with HMAC-SHA256 under the
tracking secret (kept apart from tracking tokens by its own prefix), so whoever holds the link
may change that person's subscriptions and nobody else can: the page's form posts back to the
same signed URL, which is what makes it safe from cross-site requests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

_PURPOSE = b"preferences."
_MAX_LINK_TOKEN = 2048
SHOWN_FIELD = "shown"


@dataclass(frozen=True)
class SubscriptionTopic:
    """A kind of message people subscribe to (newsletter, promotions…), on `channels`."""

    topic_id: str
    name: str
    description: str
    channels: tuple[str, ...]
    default_subscribed: bool = True


class InvalidPreferenceLink(ValueError):
    """The link is malformed, not signed with our secret, or past its expiry."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def sign_preference_link(profile_id: str, expires_at: datetime, secret: str) -> str:
    """The token of a preference link for `profile_id`, valid until `expires_at`."""
    _require_secret(secret)
    body = _encode(orjson.dumps({"p": profile_id, "e": int(expires_at.timestamp())}))
    return f"{body}.{_encode(_mac(body, secret))}"


def verify_preference_link(token: str, secret: str, now: datetime) -> str:
    """The profile a preference link's token names, if `secret` signed it and it has not
    expired; otherwise InvalidPreferenceLink."""
    _require_secret(secret)
    if len(token) > _MAX_LINK_TOKEN or token.count(".") != 1:
        raise InvalidPreferenceLink("invalid_link", "This link is not valid.")
    body, signature = token.split(".")
    if not hmac.compare_digest(_decode(signature), _mac(body, secret)):
        raise InvalidPreferenceLink("invalid_link", "This link is not valid.")
    try:
        payload = orjson.loads(_decode(body))
        profile_id, expires = payload["p"], payload["e"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise InvalidPreferenceLink("invalid_link", "This link is not valid.") from None
    if not isinstance(profile_id, str) or not isinstance(expires, int):
        raise InvalidPreferenceLink("invalid_link", "This link is not valid.")
    if now >= datetime.fromtimestamp(expires, UTC):
        raise InvalidPreferenceLink(
            "link_expired", "This link has expired: use the one in a more recent message."
        )
    return profile_id


def subscribed(
    topic: SubscriptionTopic, channel: str, answers: Mapping[str, Mapping[str, bool]]
) -> bool:
    """Whether the person is subscribed to the topic on the channel, by their recorded answer or
    the topic's default."""
    return answers.get(topic.topic_id, {}).get(channel, topic.default_subscribed)


def box_name(topic_id: str, channel: str) -> str:
    """The form field of one topic on one channel (a checkbox, sent only when ticked)."""
    return f"{topic_id}:{channel}"


class InvalidAnswers(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def answers_from_form(
    fields: Sequence[tuple[str, str]], topics: Sequence[SubscriptionTopic]
) -> dict[str, dict[str, bool]]:
    """The answers the page's form gives: for each topic it showed (`shown`), on each of the
    topic's channels, whether its box is ticked. A topic deleted since the page was shown is
    skipped; a box of no shown topic and channel is refused (InvalidAnswers names it)."""
    by_id = {topic.topic_id: topic for topic in topics}
    shown_ids = [
        topic_id
        for value in (v for k, v in fields if k == SHOWN_FIELD)
        for topic_id in value.split(",")
        if topic_id in by_id
    ]
    expected = {
        box_name(topic_id, channel)
        for topic_id in shown_ids
        for channel in by_id[topic_id].channels
    }
    ticked: set[str] = set()
    for name, _ in fields:
        if name == SHOWN_FIELD:
            continue
        if name not in expected:
            raise InvalidAnswers(name, "not a topic and channel this page showed")
        ticked.add(name)
    return {
        topic_id: {
            channel: box_name(topic_id, channel) in ticked for channel in by_id[topic_id].channels
        }
        for topic_id in shown_ids
    }


def preference_page(
    topics: Sequence[SubscriptionTopic],
    answers: Mapping[str, Mapping[str, bool]],
    *,
    saved: bool = False,
) -> str:
    """The page: a row per topic, a box per channel it is offered on, ticked when subscribed.
    Every name and description is escaped; the form posts back to the page's own URL."""
    channels = sorted({channel for topic in topics for channel in topic.channels})
    head = "".join(f"<th>{html.escape(channel)}</th>" for channel in channels)
    rows = "".join(_topic_row(topic, channels, answers) for topic in topics)
    shown = html.escape(",".join(topic.topic_id for topic in topics), quote=True)
    notice = '<p role="status">Your choices are saved.</p>' if saved else ""
    return _PAGE.format(head=head, rows=rows, shown=shown, notice=notice, field=SHOWN_FIELD)


def _topic_row(
    topic: SubscriptionTopic, channels: Sequence[str], answers: Mapping[str, Mapping[str, bool]]
) -> str:
    cells = []
    for channel in channels:
        if channel not in topic.channels:
            cells.append("<td></td>")
            continue
        name = html.escape(box_name(topic.topic_id, channel), quote=True)
        ticked = " checked" if subscribed(topic, channel, answers) else ""
        label = html.escape(f"{topic.name} by {channel}", quote=True)
        cells.append(f'<td><input type="checkbox" name="{name}" aria-label="{label}"{ticked}></td>')
    description = (
        f"<br><small>{html.escape(topic.description)}</small>" if topic.description else ""
    )
    return f"<tr><td><b>{html.escape(topic.name)}</b>{description}</td>{''.join(cells)}</tr>"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Your subscriptions</title>
<meta name="referrer" content="no-referrer"></head>
<body><h1>Your subscriptions</h1>{notice}
<form method="post">
<table><thead><tr><th>Topic</th>{head}</tr></thead><tbody>{rows}</tbody></table>
<input type="hidden" name="{field}" value="{shown}">
<p><button type="submit">Save</button></p>
</form></body></html>
"""


def _mac(body: str, secret: str) -> bytes:
    return hmac.new(secret.encode(), _PURPOSE + body.encode(), hashlib.sha256).digest()


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidPreferenceLink("invalid_link", "This link is not valid.") from None


def _require_secret(secret: str) -> None:
    if not secret:
        raise ValueError("CLOSELOOP_TRACKING_SECRET is not set: preference links cannot be signed")

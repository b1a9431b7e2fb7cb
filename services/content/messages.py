"""Composing a message: the variables a template sees, the declared defaults, and the rendered
fields turned into what `message.rendered` carries, every link tracked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from libs.common.tracking import TrackingToken, tracking_url
from services.content.links import add_open_pixel, ensure_unsubscribe, rewrite_html, rewrite_text

_SUBJECT_LIMIT = 998


@dataclass(frozen=True)
class Tracking:
    """Makes the signed tracking links of one message (its idempotency key)."""

    base_url: str
    secret: str
    idempotency_key: str

    def click(self, url: str) -> str:
        return tracking_url(
            self.base_url, TrackingToken(self.idempotency_key, "click", url), self.secret
        )

    def open_pixel(self) -> str:
        return tracking_url(self.base_url, TrackingToken(self.idempotency_key, "open"), self.secret)

    def unsubscribe(self) -> str:
        return tracking_url(
            self.base_url, TrackingToken(self.idempotency_key, "unsubscribe"), self.secret
        )


@dataclass(frozen=True)
class MessageContent:
    """The rendered parts of `message.rendered`."""

    subject: str | None = None
    body: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)


class UnsendableContent(ValueError):
    """The rendering is not a message dispatch could send (a subject too long, say)."""


def template_variables(
    request_variables: Mapping[str, Any],
    *,
    profile: Mapping[str, Any],
    journey: Mapping[str, Any] | None,
    unsubscribe_url: str | None,
) -> dict[str, Any]:
    """The request's variables (`event`, ...), then what content adds, which they cannot shadow."""
    variables = dict(request_variables)
    variables["profile"] = dict(profile)
    variables["journey"] = dict(journey or {})
    if unsubscribe_url is not None:
        variables["unsubscribe_url"] = unsubscribe_url
    return variables


def with_defaults(
    variables: Mapping[str, Any], defaults: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """The variables with each declared default (`profile.traits.first_name`) where it is
    missing, and the paths that needed their default. The variables given stay as they were."""
    filled = dict(variables)
    applied: list[str] = []
    for path, value in defaults.items():
        if _set_if_missing(filled, path.split("."), value):
            applied.append(path)
    return filled, applied


def content_of(channel: str, fields: Mapping[str, Any], tracking: Tracking) -> MessageContent:
    """The rendered fields as subject, body and payload, with tracking links."""
    keep = tracking.base_url.rstrip("/") + "/"
    if channel == "email":
        document = rewrite_html(fields["html"], tracking.click, keep_prefix=keep)
        document = add_open_pixel(
            ensure_unsubscribe(document, tracking.unsubscribe()), tracking.open_pixel()
        )
        payload = {}
        if fields.get("text"):
            text = rewrite_text(fields["text"], tracking.click, keep_prefix=keep)
            payload["text"] = f"{text}\n\nUnsubscribe: {tracking.unsubscribe()}"
        return MessageContent(_subject(fields["subject"]), document, payload)
    if channel == "sms":
        return MessageContent(body=rewrite_text(fields["text"], tracking.click, keep_prefix=keep))
    if channel == "push":
        body = rewrite_text(fields["body"], tracking.click, keep_prefix=keep)
        return MessageContent(_subject(fields["title"]), body, dict(fields.get("data") or {}))
    if channel == "webhook":
        return MessageContent(payload=dict(fields["payload"]))
    if channel == "wechat_miniprogram":
        return _subscribe_message(fields)
    return _card(fields, tracking, keep)


def _subscribe_message(fields: Mapping[str, Any]) -> MessageContent:
    """A mini-program subscribe message: the template's data and the page it opens, a path in
    the mini-program that no tracking link can stand for."""
    payload: dict[str, Any] = {"data": fields["data"]}
    page = (fields.get("url") or "").strip()
    if page:
        payload["url"] = page
    return MessageContent(payload=payload)


def _card(fields: Mapping[str, Any], tracking: Tracking, keep: str) -> MessageContent:
    """WeCom and WeChat: a card (title, description, link) and template-message data; a WeCom
    customer-contact message is its text (title, description) and link."""
    payload: dict[str, Any] = {}
    url = (fields.get("url") or "").strip()
    if url:
        is_web = url.lower().startswith(("http://", "https://")) and not url.startswith(keep)
        payload["url"] = tracking.click(url) if is_web else url
    if fields.get("data"):
        payload["data"] = fields["data"]
    return MessageContent(_subject(fields["title"]), fields.get("description") or None, payload)


def _subject(rendered: str) -> str:
    # One line: a subject or title with a line break would be a header injection in email.
    subject = " ".join(rendered.split())
    if len(subject) > _SUBJECT_LIMIT:
        raise UnsendableContent(f"the subject has {len(subject)} characters; at most 998 fit")
    return subject


def _set_if_missing(target: dict[str, Any], parts: list[str], value: Any) -> bool:
    # Each dict on the path is copied before it changes, not the whole tree up front: a
    # profile's traits are shared by every message of a batch to that person.
    for part in parts[:-1]:
        child = target.get(part)
        if child is None:
            child = target[part] = {}
        elif isinstance(child, dict):
            child = target[part] = dict(child)
        else:
            return False
        target = child
    if target.get(parts[-1]) is not None:
        return False
    target[parts[-1]] = value
    return True

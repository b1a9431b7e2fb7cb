"""Templates as content knows them: which fields each channel has, and their Liquid sources.

A variant's text fields are Liquid sources; its JSON fields (a webhook's payload, a push's data,
a card's template-message data) are JSON whose string values are Liquid. Both are flattened to
one source per JSON pointer (`subject`, `payload/order/id`) to render, then put back together.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

TEXT_FIELDS = ("subject", "html", "text", "title", "body", "description", "url")
JSON_FIELDS = ("data", "payload")

# (required, optional) fields of a variant, per channel.
CHANNEL_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "email": (frozenset({"subject", "html"}), frozenset({"text"})),
    "sms": (frozenset({"text"}), frozenset()),
    "push": (frozenset({"title", "body"}), frozenset({"data"})),
    "webhook": (frozenset({"payload"}), frozenset()),
    "wecom": (frozenset({"title"}), frozenset({"description", "url", "data"})),
    "wechat": (frozenset({"title"}), frozenset({"description", "url", "data"})),
    # A subscribe message is its template's data; `url` is the mini-program page it opens.
    "wechat_miniprogram": (frozenset({"data"}), frozenset({"url"})),
    # A customer-contact message is text and a link: it has no template-message data.
    "wecom_contact": (frozenset({"title"}), frozenset({"description", "url"})),
}
CHANNELS = tuple(CHANNEL_FIELDS)


@dataclass(frozen=True)
class TemplateVersion:
    """One immutable version of a template: what a message is rendered from."""

    template_id: str
    version: int
    channel: str
    defaults: dict[str, Any]
    variants: list[dict[str, Any]]
    reward: str
    holdout_share: float
    # The subscription topic its messages belong to (dispatch's `/topics`), if any.
    topic: str | None = None
    # Its messages go as transactional (message.rendered `contact`), never capped or arbitrated.
    transactional: bool = False

    def variant(self, variant_id: str) -> dict[str, Any] | None:
        return next((v for v in self.variants if v["id"] == variant_id), None)


def field_problems(channel: str, variant: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(field, problem) for every field the channel needs and lacks, or has and does not take."""
    required, optional = CHANNEL_FIELDS[channel]
    for name in sorted(required):
        if variant.get(name) is None:
            yield name, f"a {channel} variant needs `{name}`"
    for name in (*TEXT_FIELDS, *JSON_FIELDS):
        if variant.get(name) is not None and name not in required | optional:
            yield name, f"a {channel} variant has no `{name}`"


def liquid_sources(variant: Mapping[str, Any]) -> dict[str, str]:
    """Every Liquid source of a variant by JSON pointer: `subject`, `payload/items/0/name`."""
    sources: dict[str, str] = {}
    for name in (*TEXT_FIELDS, *JSON_FIELDS):
        value = variant.get(name)
        if value is not None:
            _collect(value, _escape(name), sources)
    return sources


def assemble(variant: Mapping[str, Any], rendered: Mapping[str, str]) -> dict[str, Any]:
    """The variant's fields with every Liquid source replaced by its rendering."""
    return {
        name: _replace(variant[name], _escape(name), rendered)
        for name in (*TEXT_FIELDS, *JSON_FIELDS)
        if variant.get(name) is not None
    }


def _collect(value: Any, pointer: str, into: dict[str, str]) -> None:
    if isinstance(value, str):
        into[pointer] = value
    elif isinstance(value, dict):
        for key, item in value.items():
            _collect(item, f"{pointer}/{_escape(key)}", into)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _collect(item, f"{pointer}/{index}", into)


def _replace(value: Any, pointer: str, rendered: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return rendered[pointer]
    if isinstance(value, dict):
        return {k: _replace(v, f"{pointer}/{_escape(k)}", rendered) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, f"{pointer}/{i}", rendered) for i, v in enumerate(value)]
    return value


def _escape(key: str) -> str:
    """A JSON pointer token (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")

"""A template as the editor's form holds it: text in inputs named by the content service's own
paths (`name`, `variants.0.subject`), so that the field a refusal names finds its input.

`TemplateDraft.of_template` fills the form from the service's template, `of_form` reads what was
posted, and `body()` is the request the content service takes (or a 422 naming the input the
console itself could not read, such as JSON that is not JSON).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

from libs.common.errors import ApiError

# The fields of a variant, per channel, in the order the editor shows them; the content service
# says which are required and refuses the rest (docs/content.md).
CHANNEL_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "email": ("subject", "html", "text"),
    "sms": ("text",),
    "push": ("title", "body", "data"),
    "webhook": ("payload",),
    "wecom": ("title", "description", "url", "data"),
    "wecom_contact": ("title", "description", "url"),
    "wechat": ("title", "description", "url", "data"),
    "wechat_miniprogram": ("data", "url"),
}
REQUIRED_FIELDS: Final[dict[str, frozenset[str]]] = {
    "email": frozenset({"subject", "html"}),
    "sms": frozenset({"text"}),
    "push": frozenset({"title", "body"}),
    "webhook": frozenset({"payload"}),
    "wecom": frozenset({"title"}),
    "wecom_contact": frozenset({"title"}),
    "wechat": frozenset({"title"}),
    "wechat_miniprogram": frozenset({"data"}),
}
JSON_FIELDS: Final = frozenset({"data", "payload"})
FIELD_LABELS: Final[dict[str, str]] = {
    "subject": "Subject",
    "html": "HTML",
    "text": "Text",
    "title": "Title",
    "body": "Body",
    "description": "Description",
    "url": "Link",
    "data": "Data (JSON)",
    "payload": "Payload (JSON)",
}
REWARDS: Final = ("clicks", "conversions")
_VARIANT_INPUT: Final = re.compile(r"^variants\.(\d{1,4})\.([a-z]+)$")
_TEMPLATE_INPUTS: Final = (
    "id",
    "name",
    "channel",
    "reward",
    "holdout_share",
    "defaults",
    "topic",
    "transactional",
)


@dataclass(frozen=True)
class VariantDraft:
    """One variant's inputs: its id, name and its channel's fields as text."""

    index: int
    id: str
    name: str
    fields: dict[str, str]


@dataclass(frozen=True)
class TemplateDraft:
    """The editor's inputs, as text; `id` is empty for a new template the service names."""

    id: str
    name: str
    channel: str
    reward: str
    holdout_share: str
    defaults: str
    variants: tuple[VariantDraft, ...]
    topic: str = ""
    transactional: bool = False

    @classmethod
    def blank(cls, channel: str) -> TemplateDraft:
        first = VariantDraft(0, "a", "", dict.fromkeys(CHANNEL_FIELDS[channel], ""))
        return cls("", "", channel, "clicks", "0", "{}", (first,))

    @classmethod
    def of_template(cls, template: dict[str, Any]) -> TemplateDraft:
        """The service's template (`GET /templates/{id}`) as the editor shows it."""
        channel = str(template["channel"])
        variants = tuple(
            VariantDraft(
                index,
                str(variant["id"]),
                str(variant.get("name") or ""),
                {name: _as_text(variant.get(name)) for name in CHANNEL_FIELDS.get(channel, ())},
            )
            for index, variant in enumerate(template["variants"])
        )
        return cls(
            str(template["id"]),
            str(template["name"]),
            channel,
            str(template.get("reward", "clicks")),
            _number(template.get("holdout_share", 0)),
            json.dumps(template.get("defaults") or {}, indent=1, ensure_ascii=False),
            variants,
            str(template.get("topic") or ""),
            bool(template.get("transactional", False)),
        )

    @classmethod
    def of_form(cls, fields: dict[str, str], *, template_id: str, channel: str) -> TemplateDraft:
        """What the editor posted, for the template `template_id` ('' when new) on `channel`."""
        found: dict[int, dict[str, str]] = {}
        for key, value in fields.items():
            match = _VARIANT_INPUT.match(key)
            if match is not None:
                found.setdefault(int(match.group(1)), {})[match.group(2)] = value
        wanted = CHANNEL_FIELDS.get(channel, ())
        variants = tuple(
            VariantDraft(
                index,
                values.get("id", "").strip(),
                values.get("name", "").strip(),
                {name: values.get(name, "") for name in wanted},
            )
            for index, values in sorted(found.items())
        )
        return cls(
            template_id,
            fields.get("name", "").strip(),
            channel,
            fields.get("reward", "clicks"),
            fields.get("holdout_share", "0").strip() or "0",
            fields.get("defaults", ""),
            variants,
            fields.get("topic", "").strip(),
            fields.get("transactional") == "on",
        )

    @property
    def field_names(self) -> tuple[str, ...]:
        """The variant fields of the template's channel, in the editor's order."""
        return CHANNEL_FIELDS.get(self.channel, ())

    def body(self) -> dict[str, Any]:
        """The request the content service takes (POST or PUT `/templates`)."""
        if self.channel not in CHANNEL_FIELDS:
            raise _unreadable("channel", f"one of {', '.join(CHANNEL_FIELDS)}")
        if self.reward not in REWARDS:
            raise _unreadable("reward", "clicks or conversions")
        try:
            holdout_share = float(self.holdout_share)
        except ValueError:
            raise _unreadable("holdout_share", "a number from 0 to 0.9") from None
        defaults = _json_object(self.defaults or "{}", "defaults")
        body: dict[str, Any] = {
            "name": self.name,
            "channel": self.channel,
            "defaults": defaults,
            "variants": [self._variant_body(variant) for variant in self.variants],
            "reward": self.reward,
            "holdout_share": holdout_share,
            "topic": self.topic or None,
            "transactional": self.transactional,
        }
        if self.id:
            body["id"] = self.id
        return body

    def input_for(self, field: str | None) -> str | None:
        """The editor's input a refusal's `field` names: itself, or the closest input holding it
        (`variants.1.payload.order.id` is in `variants.1.payload`); None when none does."""
        if not field:
            return None
        field = field.removeprefix("body.")
        match = re.match(r"^variants\.(\d+)(\..*)?$", field)
        if match is not None:
            # The service counts variants in the order sent; the inputs keep their own index.
            position = int(match.group(1))
            if position >= len(self.variants):
                return None
            field = f"variants.{self.variants[position].index}{match.group(2) or ''}"
        inputs = set(_TEMPLATE_INPUTS) | {
            f"variants.{variant.index}.{name}"
            for variant in self.variants
            for name in ("id", "name", *self.field_names)
        }
        candidate = field
        while candidate:
            if candidate in inputs:
                return candidate
            candidate = candidate.rpartition(".")[0]
        return None

    def _variant_body(self, variant: VariantDraft) -> dict[str, Any]:
        body: dict[str, Any] = {"id": variant.id}
        if variant.name:
            body["name"] = variant.name
        required = REQUIRED_FIELDS[self.channel]
        for name in self.field_names:
            text = variant.fields.get(name, "")
            if not text.strip() and name not in required:
                continue
            if name in JSON_FIELDS:
                body[name] = _json_object(text, f"variants.{variant.index}.{name}")
            else:
                body[name] = text.replace("\r\n", "\n")
        return body


def definition(template: dict[str, Any]) -> dict[str, Any]:
    """What the audit log keeps of a template: what a person wrote, not the service's times."""
    keys = (
        "id",
        "name",
        "channel",
        "version",
        "defaults",
        "variants",
        "reward",
        "holdout_share",
        "topic",
        "transactional",
    )
    return {key: template[key] for key in keys if key in template}


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=1, ensure_ascii=False)


def _number(value: Any) -> str:
    return f"{float(value):g}"


def _json_object(text: str, field: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise _unreadable(field, "a JSON object, e.g. {}") from None
    if not isinstance(value, dict):
        raise _unreadable(field, "a JSON object, e.g. {}")
    return value


def _unreadable(field: str, expected: str) -> ApiError:
    return ApiError(422, "invalid_request", f"{field}: expected {expected}", field)

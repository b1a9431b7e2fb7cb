"""The profile pages' core: what a search asks the profile service, and a person's timeline
told from four services' answers. Pure: the pages fetch, these decide."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

PROFILE_ID_PATTERN: Final = r"^prf_[0-9A-Za-z_-]{1,124}$"
MAX_QUERY: Final = 512
_PROFILE_ID = re.compile(PROFILE_ID_PATTERN)
_PHONE = re.compile(r"^\+?[0-9][0-9 ().-]{5,}$")
_DETAIL_LENGTH: Final = 240
# A message's outcomes its line in dispatch's ledger already tells.
_TOLD_BY_DISPATCH: Final = frozenset({"message.sent", "message.failed", "message.suppressed"})

LookupKind = Literal["all", "profile", "identifier", "trait"]
EntryKind = Literal["behaviour", "message", "outcome", "conversion"]


@dataclass(frozen=True)
class Lookup:
    """One question to the profile service: every profile, one by id, the owner of an
    identifier (`email:a@b.c`), or those with a trait (`plan:pro`)."""

    kind: LookupKind
    text: str = ""


def lookups_for(query: str) -> list[Lookup]:
    """What a search box's text asks, most precise first. `type:value` is an identifier or
    a trait (both are asked); a bare email, phone or id is tried as each identifier it
    could be, and an email as the `email` trait too."""
    query = query.strip()
    if not query:
        return [Lookup("all")]
    if _PROFILE_ID.match(query):
        return [Lookup("profile", query)]
    if ":" in query:
        return [Lookup("identifier", query), Lookup("trait", query)]
    if "@" in query:
        return [Lookup("identifier", f"email:{query}"), Lookup("trait", f"email:{query}")]
    found = [
        Lookup("identifier", f"user_id:{query}"),
        Lookup("identifier", f"anonymous_id:{query}"),
    ]
    if _PHONE.match(query):
        found.append(Lookup("identifier", f"phone:{query}"))
    return found


def unique_profiles(pages: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The profiles of every lookup's answer, each once, in the order first found."""
    seen: set[str] = set()
    found = []
    for page in pages:
        for profile in page:
            if profile["id"] not in seen:
                seen.add(profile["id"])
                found.append(profile)
    return found


@dataclass(frozen=True)
class Entry:
    """One line of a person's timeline."""

    at: datetime
    kind: EntryKind
    title: str
    detail: str


def timeline(
    events: Sequence[dict[str, Any]],
    messages: Sequence[dict[str, Any]],
    touches: Sequence[dict[str, Any]],
    conversions: Sequence[dict[str, Any]],
) -> list[Entry]:
    """Behaviour (profile), messages (dispatch), what became of them and the conversions
    credited to them (attribution), newest first. A message dispatch still holds is shown
    once, as dispatch tells it (sent, failed or suppressed), with what came of it after; for
    one dispatch has forgotten, attribution's outcomes tell it all."""
    held = {message["message_id"] for message in messages}
    entries = [
        *(_behaviour(event) for event in events),
        *(_message(message) for message in messages),
        *(
            _outcome(touch)
            for touch in touches
            if not (touch["outcome"] in _TOLD_BY_DISPATCH and touch["message_id"] in held)
        ),
        *(_conversion(conversion) for conversion in conversions),
    ]
    return sorted(entries, key=lambda entry: entry.at, reverse=True)


def _behaviour(event: dict[str, Any]) -> Entry:
    kind, name = event["kind"], event["event"]
    title = name if kind == "track" or name == kind else f"{kind}: {name}" if name else kind
    return Entry(_when(event["occurred_at"]), "behaviour", title, _compact(event["properties"]))


def _message(message: dict[str, Any]) -> Entry:
    journey = message.get("journey") or {}
    parts = [
        f"“{message['subject']}”" if message.get("subject") else None,
        _template(message),
        _journey(journey.get("journey_id"), journey.get("node_id")),
        message.get("error"),
    ]
    at = message.get("sent_at") or message["created_at"]
    title = f"{message['channel']} message {message['status']}"
    return Entry(_when(at), "message", title, " · ".join(p for p in parts if p))


def _outcome(touch: dict[str, Any]) -> Entry:
    outcome = str(touch["outcome"]).removeprefix("message.")
    parts = [
        _template(touch),
        _journey(touch.get("journey_id"), touch.get("node_id")),
        f"message {touch['message_id']}",
    ]
    title = f"{touch['channel']} message {outcome}"
    return Entry(_when(touch["occurred_at"]), "outcome", title, " · ".join(p for p in parts if p))


def _conversion(conversion: dict[str, Any]) -> Entry:
    value = conversion.get("value")
    worth = f"{value} {conversion.get('currency') or ''}".strip() if value is not None else None
    credits = conversion.get("credits") or []
    credited = (
        "credited to " + ", ".join(f"{c['message_id']} ({c['share']:.0%})" for c in credits)
        if credits
        else "no message in its window"
    )
    parts = [worth, f"{conversion['attribution_model']}: {credited}"]
    title = f"conversion {conversion['definition_id']}"
    return Entry(
        _when(conversion["occurred_at"]),
        "conversion",
        title,
        " · ".join(p for p in parts if p),
    )


def _template(item: dict[str, Any]) -> str | None:
    template = item.get("template_id")
    if not template:
        return None
    variant = item.get("variant_id")
    return f"template {template}" + (f" variant {variant}" if variant else "")


def _journey(journey_id: str | None, node_id: str | None) -> str | None:
    if not journey_id:
        return None
    return f"journey {journey_id}" + (f" at {node_id}" if node_id else "")


def _compact(properties: Any) -> str:
    if not properties:
        return ""
    text = json.dumps(properties, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= _DETAIL_LENGTH else text[: _DETAIL_LENGTH - 1] + "…"


def readable_time(text: str | None) -> str | None:
    """An ISO 8601 time from a service as people read it, in UTC to the minute."""
    if not text:
        return None
    return _when(text).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _when(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

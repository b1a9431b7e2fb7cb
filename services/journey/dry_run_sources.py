"""What a dry run replays: who (journey's own copy of profiles and memberships), what they did
(the behaviours, asked of segment, which keeps them) and what dispatch would allow (its policy,
its subscription topics and each person's consent and topic answers, asked of dispatch; each
template's topic and transactional mark, asked of content). Management path only (decision
0025).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

import httpx
import orjson

from libs.common.contact_policy import (
    InvalidPolicy,
    Preferences,
    SendPolicy,
    TopicRule,
    parse_policy,
)
from libs.common.profiles import ProfileFacts
from services.journey.dry_run import Behaviour, ContactRules, Person, TemplateRule
from services.journey.graph import Journey, WaitFor
from services.journey.references import ReferenceUnavailable
from services.journey.store import JourneyStore

_PREFERENCES_PAGE = 10_000


@dataclass(frozen=True)
class Replayed:
    """The behaviours a dry run got, and whether segment had more than it was given."""

    behaviours: list[Behaviour]
    truncated: bool = False


@runtime_checkable
class DryRunSources(Protocol):
    async def behaviours(self, events: Sequence[str], since: datetime) -> Replayed:
        """The named behaviours from `since` on, oldest first; ReferenceUnavailable (naming
        segment) when they cannot be had."""

    async def contact_rules(self) -> ContactRules:
        """Dispatch's caps, quiet hours, subscription topics and everyone's consent and topic
        answers; ReferenceUnavailable (naming dispatch) when they cannot be had."""

    async def template_rules(self, template_ids: Sequence[str]) -> dict[str, TemplateRule]:
        """Each template's topic and transactional mark; ReferenceUnavailable (naming content)
        when they cannot be had."""


class HttpDryRunSources:
    """Asks `GET {segment}/behaviours`, `GET {dispatch}/policies`, `GET {dispatch}/topics`,
    `GET {dispatch}/preferences` and `GET {content}/templates/{id}`.

    An empty base URL replays without that service: no behaviours; no caps, no quiet hours, no
    topics and everyone consenting; templates of no topic, none transactional."""

    def __init__(
        self,
        *,
        segment_url: str,
        dispatch_url: str,
        content_url: str,
        admin_token: str,
        timeout_seconds: float,
        behaviour_limit: int,
    ) -> None:
        self._segment_url = segment_url.rstrip("/")
        self._dispatch_url = dispatch_url.rstrip("/")
        self._content_url = content_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {admin_token}"}
        self._timeout = timeout_seconds
        self._behaviour_limit = behaviour_limit

    async def behaviours(self, events: Sequence[str], since: datetime) -> Replayed:
        if not self._segment_url or not events:
            return Replayed([])
        params = {"event": list(events), "since": since.isoformat(), "limit": self._behaviour_limit}
        body = await self._get("segment", f"{self._segment_url}/behaviours", params)
        return Replayed(
            [
                Behaviour(
                    row["profile_id"],
                    row["event"],
                    datetime.fromisoformat(row["occurred_at"]),
                    row["properties"],
                )
                for row in body["behaviours"]
            ],
            bool(body["truncated"]),
        )

    async def contact_rules(self) -> ContactRules:
        if not self._dispatch_url:
            return ContactRules(SendPolicy(), {}, default_consent=True)
        document = await self._get("dispatch", f"{self._dispatch_url}/policies", {})
        try:
            policy = parse_policy(document)
        except InvalidPolicy as error:
            raise ReferenceUnavailable("dispatch", f"its policy does not parse: {error}") from None
        listed = await self._get("dispatch", f"{self._dispatch_url}/topics", {})
        topics = {
            item["topic_id"]: TopicRule(item["topic_id"], bool(item["default_subscribed"]))
            for item in listed["topics"]
        }
        preferences, default_consent = await self._preferences()
        return ContactRules(policy, preferences, default_consent, topics)

    async def _preferences(self) -> tuple[dict[str, Preferences], bool]:
        """Everyone's recorded answers, a page at a time, and the default consent."""
        preferences: dict[str, Preferences] = {}
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": _PREFERENCES_PAGE}
            if after is not None:
                params["after"] = after
            page = await self._get("dispatch", f"{self._dispatch_url}/preferences", params)
            for item in page["preferences"]:
                preferences[item["profile_id"]] = Preferences(
                    item["consent"], frozenset(item["unsubscribed"]), item["topics"]
                )
            after = page["next"]
            if after is None:
                return preferences, bool(page["default_consent"])

    async def template_rules(self, template_ids: Sequence[str]) -> dict[str, TemplateRule]:
        if not self._content_url:
            return {}
        ids = sorted(set(template_ids))
        found = await asyncio.gather(*(self._template_rule(template_id) for template_id in ids))
        return {template_id: rule for template_id, rule in zip(ids, found, strict=True) if rule}

    async def _template_rule(self, template_id: str) -> TemplateRule | None:
        """None for a template content does not have (the dry run of a draft may name one)."""
        url = f"{self._content_url}/templates/{quote(template_id, safe='')}"
        body = await self._get("content", url, {}, missing_ok=True)
        if body is None:
            return None
        return TemplateRule(body.get("topic"), bool(body.get("transactional")))

    async def _get(
        self, service: str, url: str, params: dict[str, Any], *, missing_ok: bool = False
    ) -> Any:
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.get(url, params=params, headers=self._headers)
        except httpx.HTTPError as error:
            raise ReferenceUnavailable(service, type(error).__name__) from None
        if missing_ok and response.status_code == 404:
            return None
        if response.status_code != 200:
            raise ReferenceUnavailable(service, f"{url} answered {response.status_code}")
        return orjson.loads(response.content)


def events_heard(journey: Journey) -> list[str]:
    """The behaviours that move the journey: its entry's, its wait_for nodes', its goal's."""
    named = {journey.entry.event, journey.goal.event if journey.goal else None}
    named |= {node.event for node in journey.nodes.values() if isinstance(node, WaitFor)}
    return sorted(name for name in named if name is not None)


def templates_sent(journey: Journey) -> list[str]:
    """The templates the journey's sends name, on any of their channels."""
    return sorted({option.template_id for node in journey.sends() for option in node.options})


async def people(
    journey: Journey, store: JourneyStore, replayed: Replayed, since: datetime
) -> list[Person]:
    """Who the dry run replays: the entry segment's members today, entering at `since` (as if
    the journey had been published then), or everyone with a behaviour of the replayed days
    (event entry); each with their behaviours."""
    by_person: defaultdict[str, list[Behaviour]] = defaultdict(list)
    for behaviour in replayed.behaviours:
        by_person[behaviour.profile_id].append(behaviour)
    if journey.entry.segment is not None:
        members = await store.members_with_facts(journey.entry.segment)
        return [Person(facts, since, by_person.get(facts.profile_id, ())) for facts in members]
    known = {facts.profile_id: facts for facts in await store.facts_of(by_person)}
    return [
        Person(known.get(profile_id) or ProfileFacts(profile_id), None, behaviours)
        for profile_id, behaviours in sorted(by_person.items())
    ]

"""Copy suggestions from a brief: an OpenAI-compatible model when one is configured, otherwise
an offline method that recombines the variants that performed best on the channel."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import orjson

from services.content.experiments import EvidenceRow, variant_evidence
from services.content.sandbox import RenderError, RenderSandbox
from services.content.templates import TemplateVersion

# The field that catches the eye and the field that says the rest, per channel people read.
HEADLINE_FIELDS = {"email": "subject", "push": "title", "wecom": "title", "wechat": "title"}
BODY_FIELDS = {
    "email": "html",
    "sms": "text",
    "push": "body",
    "wecom": "description",
    "wechat": "description",
}
COPY_CHANNELS = tuple(BODY_FIELDS)
_TOP_VARIANTS = 6
_WORD = re.compile(r"\w+", re.UNICODE)
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


@dataclass(frozen=True)
class RankedVariant:
    """A variant of some template of a channel, with the bandit's posterior mean of its rate."""

    template_id: str
    variant: dict[str, Any]
    posterior_mean: float


def ranked_variants(
    templates: Sequence[TemplateVersion],
    evidence: Mapping[str, Sequence[EvidenceRow]],
    now: datetime,
    half_life_days: float,
) -> list[RankedVariant]:
    """Every variant of these templates with its posterior mean over all contexts, as of now."""
    ranked: list[RankedVariant] = []
    for template in templates:
        found = variant_evidence(
            template, evidence.get(template.template_id, ()), now, half_life_days
        )
        ranked.extend(
            RankedVariant(template.template_id, variant, summary.posterior_mean)
            for variant, summary in zip(template.variants, found, strict=True)
        )
    return ranked


@dataclass(frozen=True)
class Suggestion:
    fields: dict[str, str]
    rationale: str


class CopywriterUnavailable(Exception):
    """The model could not be asked, or did not answer usefully."""


def recombine(
    ranked: Sequence[RankedVariant], channel: str, brief: str, count: int
) -> list[Suggestion]:
    """The offline method: headlines and bodies of the best variants (by posterior mean),
    paired and ranked by their mean, words shared with the brief breaking ties."""
    brief_words = _words(brief)
    body_field, headline_field = BODY_FIELDS[channel], HEADLINE_FIELDS.get(channel)

    def score(variant: RankedVariant) -> tuple[float, int]:
        text = " ".join(
            str(variant.variant.get(f) or "") for f in (headline_field, body_field) if f
        )
        return variant.posterior_mean, len(brief_words & _words(text))

    best = sorted(ranked, key=score, reverse=True)[:_TOP_VARIANTS]
    if headline_field is None:
        pairs = [(v, v) for v in best]
    else:
        pairs = sorted(
            itertools.product(best, best),
            key=lambda p: tuple(a + b for a, b in zip(score(p[0]), score(p[1]), strict=True)),
            reverse=True,
        )
    suggestions: list[Suggestion] = []
    seen: set[tuple[tuple[str, str], ...]] = set()
    for head, body in pairs:
        fields = {body_field: str(body.variant.get(body_field) or "")}
        if headline_field is not None:
            fields[headline_field] = str(head.variant.get(headline_field) or "")
        key = tuple(sorted(fields.items()))
        if key in seen or not any(fields.values()):
            continue
        seen.add(key)
        suggestions.append(Suggestion(fields, _rationale(head, body, headline_field, body_field)))
        if len(suggestions) == count:
            break
    return suggestions


def _rationale(
    head: RankedVariant, body: RankedVariant, headline_field: str | None, body_field: str
) -> str:
    def named(variant: RankedVariant) -> str:
        return (
            f"{variant.template_id}/{variant.variant['id']} "
            f"(posterior mean {variant.posterior_mean:.3f})"
        )

    if headline_field is None or head is body:
        return f"variant {named(body)} as it is"
    return f"{headline_field} of {named(head)} with {body_field} of {named(body)}"


def _words(text: str) -> set[str]:
    return {word.lower() for word in _WORD.findall(text) if len(word) > 2}


@dataclass(frozen=True)
class LlmCopywriter:
    """Asks an OpenAI-compatible chat-completions endpoint for copy."""

    base_url: str
    model: str
    api_key: str
    timeout_seconds: float
    sandbox: RenderSandbox

    async def suggest(self, channel: str, brief: str, count: int) -> list[Suggestion]:
        fields = [f for f in (HEADLINE_FIELDS.get(channel), BODY_FIELDS[channel]) if f]
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": _instructions(channel, fields, count)},
                {"role": "user", "content": brief},
            ],
            "temperature": 0.8,
        }
        url = f"{self.base_url.rstrip('/')}/v1/chat/completions"
        try:
            async with httpx.AsyncClient(timeout=self.timeout_seconds) as client:
                response = await client.post(url, json=body, headers=headers)
                response.raise_for_status()
                content = response.json()["choices"][0]["message"]["content"]
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as error:
            raise CopywriterUnavailable(f"the model did not answer: {error!r}") from error
        usable = [f for f in _copies_in(content, fields) if await self._parses(f)]
        if not usable:
            raise CopywriterUnavailable("the model's answer had no usable suggestion")
        return [Suggestion(f, f"written by {self.model}") for f in usable[:count]]

    async def _parses(self, copy: dict[str, str]) -> bool:
        try:
            return not await self.sandbox.syntax_errors(copy)
        except RenderError:
            return False


def _instructions(channel: str, fields: list[str], count: int) -> str:
    shape = ", ".join(f'"{f}": "..."' for f in fields)
    return (
        f"You write marketing copy for the {channel} channel. Write {count} distinct options "
        "for the brief the user gives. You may use Liquid variables such as "
        "{{ profile.traits.first_name }}. Answer with JSON only, in the form "
        f'{{"suggestions": [{{{shape}}}]}}.'
    )


def _copies_in(content: Any, fields: list[str]) -> list[dict[str, str]]:
    """The suggestions of the model's answer that have every field (their Liquid unchecked)."""
    if not isinstance(content, str):
        raise CopywriterUnavailable("the model's answer has no text")
    try:
        parsed = orjson.loads(_FENCE.sub("", content.strip()))
    except orjson.JSONDecodeError as error:
        raise CopywriterUnavailable("the model's answer is not JSON") from error
    items = parsed.get("suggestions") if isinstance(parsed, dict) else parsed
    if not isinstance(items, list):
        raise CopywriterUnavailable("the model's answer has no suggestions")
    copies = []
    for item in items:
        if not isinstance(item, dict):
            continue
        chosen = {f: item[f] for f in fields if isinstance(item.get(f), str) and item[f].strip()}
        if len(chosen) == len(fields):
            copies.append(chosen)
    return copies

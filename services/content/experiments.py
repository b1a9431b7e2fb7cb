"""A template's variant experiment as the service runs it: the context a send is chosen in, the
evidence per context as of now, the policy that chooses each request's variant, and the promotion
each evaluation decides, with the insight that says so.

The model (pooling, Thompson sampling, Scott's rule, decay) is bandit.py; this is the service's
side of it. Pure: the store loads and saves, the handler and the evaluations call these.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from libs.common.events import ConversionAttributed, MessageClicked, MessageSent
from libs.common.profiles import ProfileFacts
from services.content.bandit import (
    BanditSettings,
    Choice,
    Context,
    ContextualModel,
    Counts,
    Evaluation,
    choice_probabilities,
    decay_factor,
    evaluate,
    fit,
    hour_band,
)
from services.content.templates import TemplateVersion

BANDIT = BanditSettings()
Outcome = MessageSent | MessageClicked | ConversionAttributed
InsightKind = Literal["variant_promoted", "promotion_lifted"]

# The hour band of a send whose context content did not log: sent before contexts were logged,
# or its decision erased with its person. Such sends pool with the rest at the channel's level.
UNKNOWN_BAND = ""
_SECONDS_PER_DAY = 86_400.0


def seeded_rng(text: str) -> np.random.Generator:
    """A generator seeded by the text, the same in every process (Python's hash is not)."""
    return np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()))


# The context of a send.


def send_context(profile: ProfileFacts, channel: str, now: datetime) -> Context:
    """What a request's variant is chosen by: the person's lifecycle stage and top category, the
    channel, and the band of the person's local hour now (their `timezone` trait; UTC when it is
    missing or not a zone)."""
    local = now.astimezone(_zone(profile.traits.get("timezone")))
    return Context(profile.lifecycle_stage, profile.top_category, channel, hour_band(local.hour))


def unknown_context(channel: str) -> Context:
    """The context of a send content logged none for."""
    return Context(None, None, channel, UNKNOWN_BAND)


def _zone(name: Any) -> tzinfo:
    if isinstance(name, str):
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return UTC


# The evidence.


@dataclass(frozen=True, slots=True)
class Reward:
    """A trial, click or conversion of a message, in the context its variant was chosen in."""

    message_id: str
    kind: str  # `trial`, `click` or `conversion:<conversion id>`
    template_id: str
    variant_id: str
    context_key: str
    amount: float


def rewards_of(
    outcomes: Sequence[Outcome], logged: Mapping[str, str], sent: Mapping[str, str]
) -> list[Reward]:
    """The evidence a batch's outcomes bring, each (message, kind) once: a send is a trial, its
    click a success, a conversion its credit share.

    `logged` is the context key content logged with each request's decision, by request id;
    `sent` the context each message's trial was counted in, by message id (a conversion names its
    message, not its request). A send content logged no context for counts in
    `unknown_context`; so does a conversion whose send was not counted, unless it names no
    channel either, which leaves it no context to count in.
    """
    contexts_sent = dict(sent)
    rewards: dict[tuple[str, str], Reward] = {}
    for data in outcomes:
        if data.template_id is None or data.variant_id is None:
            continue
        if isinstance(data, ConversionAttributed):
            kind, amount = f"conversion:{data.conversion_id}", data.credit_share
            context_key = contexts_sent.get(data.message_id)
            if context_key is None and data.channel is not None:
                context_key = unknown_context(data.channel).key
        else:
            kind, amount = ("trial" if isinstance(data, MessageSent) else "click"), 1.0
            context_key = logged.get(data.request_id) or unknown_context(data.channel).key
            if kind == "trial":
                contexts_sent.setdefault(data.message_id, context_key)
        if context_key is not None:
            reward = Reward(
                data.message_id, kind, data.template_id, data.variant_id, context_key, amount
            )
            rewards.setdefault((reward.message_id, reward.kind), reward)  # the first one counts
    return list(rewards.values())


@dataclass(frozen=True, slots=True)
class EvidenceRow:
    """A template's stored counts for one (context, variant), discounted up to `updated_at`."""

    context_key: str
    variant_id: str
    trials: float
    clicks: float
    conversions: float
    updated_at: datetime


def evidence_as_of(
    rows: Sequence[EvidenceRow], reward: str, now: datetime, half_life_days: float
) -> dict[tuple[str, str], Counts]:
    """The evidence the model is fitted on: each row's trials and successes (clicks, or credited
    conversions) discounted from its last update to now."""
    evidence: dict[tuple[str, str], Counts] = {}
    for row in rows:
        days = max((now - row.updated_at).total_seconds(), 0.0) / _SECONDS_PER_DAY
        factor = decay_factor(days, half_life_days)
        successes = row.conversions if reward == "conversions" else row.clicks
        evidence[row.context_key, row.variant_id] = Counts(row.trials * factor, successes * factor)
    return evidence


@dataclass(frozen=True)
class VariantEvidence:
    """What the bandit knows of one variant over all contexts, as of now."""

    variant_id: str
    trials: float
    successes: float

    @property
    def posterior_mean(self) -> float:
        """Its rate over all contexts: the mean of Beta(successes + 1, failures + 1), as the
        context-blind bandit has it (a click can be counted before its send)."""
        return (min(self.successes, self.trials) + 1.0) / (self.trials + 2.0)


def variant_evidence(
    template: TemplateVersion, rows: Sequence[EvidenceRow], now: datetime, half_life_days: float
) -> list[VariantEvidence]:
    """Each variant's sends and successes summed over contexts, discounted, in template order."""
    trials = dict.fromkeys(template_variants(template), 0.0)
    successes = dict(trials)
    for (_, variant_id), counts in evidence_as_of(
        rows, template.reward, now, half_life_days
    ).items():
        if variant_id in trials:
            trials[variant_id] += counts.trials
            successes[variant_id] += counts.successes
    return [VariantEvidence(v, trials[v], successes[v]) for v in trials]


@dataclass(frozen=True)
class VariantRates:
    """One variant's sends, clicks and credited conversions over all contexts, discounted to now
    (both counts, whatever the template's reward)."""

    variant_id: str
    sends: float
    clicks: float
    conversions: float


def variant_rates(
    template: TemplateVersion, rows: Sequence[EvidenceRow], now: datetime, half_life_days: float
) -> list[VariantRates]:
    """Each current variant's sends, clicks and conversions, in template order."""
    counts = {variant_id: [0.0, 0.0, 0.0] for variant_id in template_variants(template)}
    for row in rows:
        found = counts.get(row.variant_id)
        if found is None:
            continue
        days = max((now - row.updated_at).total_seconds(), 0.0) / _SECONDS_PER_DAY
        factor = decay_factor(days, half_life_days)
        found[0] += row.trials * factor
        found[1] += row.clicks * factor
        found[2] += row.conversions * factor
    return [VariantRates(variant_id, *found) for variant_id, found in counts.items()]


def template_variants(template: TemplateVersion) -> tuple[str, ...]:
    return tuple(variant["id"] for variant in template.variants)


# The choice.


@dataclass
class VariantPolicy:
    """How a template's requests choose their variant until it is fitted again.

    Each context's choice probabilities are estimated once (`choice_probabilities`: Thompson
    sampling from `BANDIT.draws` joint posterior draws, about a millisecond) and every request in
    that context draws its variant from them: `choose` in two steps, the first shared. The
    probabilities are the policy, so the propensity logged is exactly the probability of the
    choice made.
    """

    template_id: str
    model: ContextualModel
    promoted: bool
    _in_context: dict[str, _ContextChoice] = field(default_factory=dict, init=False, repr=False)

    def choose(self, context: Context, rng: random.Random) -> Choice:
        """Thompson sampling in the context (or, once promoted, its leader but for the floor),
        with one uniform draw of `rng`."""
        found = self._choice_in(context)
        # As numpy's `Generator.choice` draws with probabilities: the cumulative share, ending
        # at exactly 1, searched for a uniform draw in [0, 1).
        chosen = bisect.bisect_right(found.cumulative, rng.random())
        variant_id = self.model.variants[chosen]
        return Choice(variant_id, found.probabilities[variant_id], dict(found.probabilities))

    def split(self, channel: str) -> dict[str, float]:
        """The share of requests each variant gets now: each context's choice probabilities
        weighted by the context's sends; before any send, those of a request on `channel` with
        no facts (every context chooses alike then)."""
        sent = {key: trials for key, trials in self.model.traffic.items() if trials > 0}
        if not sent:
            return dict(self._choice_in(unknown_context(channel)).probabilities)
        total = sum(sent.values())
        split = dict.fromkeys(self.model.variants, 0.0)
        for key, trials in sent.items():
            for variant_id, share in self._choice_in(Context.from_key(key)).probabilities.items():
                split[variant_id] += share * trials / total
        return split

    def _choice_in(self, context: Context) -> _ContextChoice:
        found = self._in_context.get(context.key)
        if found is None:
            found = self._in_context[context.key] = self._estimate(context)
        return found

    def _estimate(self, context: Context) -> _ContextChoice:
        # Seeded by the context: the same model estimates the same probabilities in every
        # process, so a redelivered request chooses as it did.
        estimated = choice_probabilities(
            self.model,
            [context],
            seeded_rng(f"{self.template_id}|{context.key}"),
            promoted=self.promoted,
            settings=BANDIT,
        )[0].tolist()
        total = sum(estimated)
        return _ContextChoice(
            dict(zip(self.model.variants, estimated, strict=True)),
            tuple(share / total for share in itertools.accumulate(estimated)),
        )


@dataclass(frozen=True, slots=True)
class _ContextChoice:
    probabilities: dict[str, float]
    cumulative: tuple[float, ...]


def fitted_policy(
    template: TemplateVersion,
    rows: Sequence[EvidenceRow],
    experiment: Experiment | None,
    now: datetime,
    half_life_days: float,
) -> VariantPolicy:
    """The template's policy: its model fitted on the evidence as of now, promoted while the
    experiment's promotion stands for these variants."""
    variants = template_variants(template)
    model = fit(evidence_as_of(rows, template.reward, now, half_life_days), variants, BANDIT)
    promoted = experiment is not None and experiment.promoted_for(variants)
    return VariantPolicy(template.template_id, model, promoted)


def current_split(
    template: TemplateVersion,
    rows: Sequence[EvidenceRow],
    experiment: Experiment | None,
    now: datetime,
    half_life_days: float,
) -> dict[str, float]:
    """The share of requests each variant gets from the template's policy as of now (fitted as
    the handler fits it; about a millisecond per context with sends)."""
    policy = fitted_policy(template, rows, experiment, now, half_life_days)
    return policy.split(template.channel)


class PolicyCache:
    """Each template's policy, kept for `seconds` so that requests do not refit the model.

    New evidence reaches the choices within that time; an evaluation in this process forgets the
    template, so that its promotion or lift applies to the next request.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._kept: dict[str, tuple[float, tuple[tuple[str, ...], str], VariantPolicy]] = {}

    def get(self, template: TemplateVersion) -> VariantPolicy | None:
        """The template's policy if it is fresh and was fitted for its variants and reward."""
        kept = self._kept.get(template.template_id)
        if kept is None:
            return None
        expires, fitted_for, policy = kept
        if self._clock() >= expires or fitted_for != _fitted_for(template):
            return None
        return policy

    def keep(self, template: TemplateVersion, policy: VariantPolicy) -> None:
        expires = self._clock() + self._seconds
        self._kept[template.template_id] = (expires, _fitted_for(template), policy)

    def forget(self, template_id: str) -> None:
        self._kept.pop(template_id, None)


def _fitted_for(template: TemplateVersion) -> tuple[tuple[str, ...], str]:
    return template_variants(template), template.reward


# The evaluation, the promotion and the insight.


@dataclass(frozen=True)
class Experiment:
    """A template's experiment as last evaluated: its leaders are promoted since `promoted_at`
    (None while it explores), for the variants it was evaluated with."""

    template_id: str
    variants: tuple[str, ...]
    promoted_at: datetime | None
    value_remaining: float
    probability_optimal: float
    probability_best: dict[str, float]
    # Context key -> its leading variant (the template pool's key before any evidence).
    leaders: dict[str, str]
    evaluated_at: datetime

    def promoted_for(self, variants: Sequence[str]) -> bool:
        """Whether the promotion stands for these variants: one added or removed since reopens
        the experiment (a new variant, knowing nothing, would otherwise lead at once)."""
        return self.promoted_at is not None and sorted(self.variants) == sorted(variants)

    @property
    def winner(self) -> str | None:
        """The promoted variant, when one variant leads in every context."""
        leading = set(self.leaders.values())
        return leading.pop() if self.promoted_at is not None and len(leading) == 1 else None


@dataclass(frozen=True)
class Insight:
    """What an evaluation changed, in words a marketer reads, with the figures behind it."""

    template_id: str
    kind: InsightKind
    message: str
    evidence: dict[str, Any]


def evaluate_experiment(
    template: TemplateVersion,
    rows: Sequence[EvidenceRow],
    previous: Experiment | None,
    now: datetime,
    half_life_days: float,
) -> tuple[Experiment, Insight | None]:
    """Scott's rule on the template's evidence as of now, with the standing promotion (the rule
    has hysteresis): the experiment as it now is, and the insight when its promotion changed."""
    variants = template_variants(template)
    model = fit(evidence_as_of(rows, template.reward, now, half_life_days), variants, BANDIT)
    standing = previous is not None and previous.promoted_for(variants)
    evaluation = evaluate(
        model, seeded_rng(template.template_id), promoted=standing, settings=BANDIT
    )
    return judged(template.template_id, variants, previous, evaluation, now)


def judged(
    template_id: str,
    variants: Sequence[str],
    previous: Experiment | None,
    evaluation: Evaluation,
    now: datetime,
) -> tuple[Experiment, Insight | None]:
    """The experiment after an evaluation, and the insight when its promotion began, moved to
    another winner (the leaders follow the evidence), or ended."""
    standing = previous is not None and previous.promoted_for(variants)
    experiment = Experiment(
        template_id,
        tuple(variants),
        now if evaluation.promoted else None,
        evaluation.value_remaining,
        evaluation.probability_optimal,
        evaluation.probability_best,
        evaluation.leaders,
        now,
    )
    if not evaluation.promoted:
        if previous is None or previous.promoted_at is None:
            return experiment, None
        return experiment, _lifted(previous, experiment, variants_changed=not standing)
    if standing and previous is not None and previous.winner == experiment.winner:
        return replace(experiment, promoted_at=previous.promoted_at), None
    return experiment, _promoted(experiment)


def _promoted(experiment: Experiment) -> Insight:
    bound = max(experiment.value_remaining, BANDIT.promote_below)
    sure = f"{_percent(BANDIT.value_quantile)} sure no variant beats"
    winner = experiment.winner
    if winner is not None:
        message = (
            f"Variant {winner} of template {experiment.template_id} was promoted: {sure} it "
            f"by more than {_percent(bound)}."
        )
    else:
        leading = Counter(experiment.leaders.values()).most_common()
        where = ", ".join(f"{variant} in {count}" for variant, count in leading)
        message = (
            f"The leading variants of template {experiment.template_id} were promoted, each "
            f"where it leads (contexts: {where}): {sure} them by more than {_percent(bound)}."
        )
    return Insight(experiment.template_id, "variant_promoted", message, _figures(experiment))


def _lifted(previous: Experiment, experiment: Experiment, *, variants_changed: bool) -> Insight:
    winner = previous.winner
    promoted, them = (f"variant {winner}", "it") if winner else ("the leading variants", "them")
    if variants_changed:
        why = "its variants changed"
    else:
        why = (
            f"a variant may now beat {them} by {_percent(experiment.value_remaining)} "
            f"(more than {_percent(BANDIT.lift_above)})"
        )
    message = (
        f"The promotion of {promoted} of template {experiment.template_id} was lifted: {why}; "
        "it is explored again."
    )
    return Insight(experiment.template_id, "promotion_lifted", message, _figures(experiment))


def _figures(experiment: Experiment) -> dict[str, Any]:
    return {
        "winner": experiment.winner,
        "value_remaining": experiment.value_remaining,
        "value_quantile": BANDIT.value_quantile,
        "probability_optimal": experiment.probability_optimal,
        "probability_best": experiment.probability_best,
        "contexts": len(experiment.leaders),
    }


def _percent(share: float) -> str:
    return f"{100 * share:.3g} %"

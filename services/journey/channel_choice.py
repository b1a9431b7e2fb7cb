"""Channel choice: the eligible channel with the best engagement posterior, and its fallbacks.

Pure functions, no I/O. Each person's engagement per send on a channel has a Beta posterior shrunk
toward the population's rate on that channel (empirical Bayes, as in timing.py). The channel with
the highest posterior mean is chosen, except for a small share of sends that explore a channel
drawn uniformly; the other eligible channels follow by posterior mean as the fallbacks for a send
that cannot be delivered. The model, its fitting, why not Thompson sampling, and its failure
modes are in docs/models/channel-choice.md.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from services.journey.timing import STRENGTH_RANGE, fit_strength

EXPLORE_SHARE = 0.05
# A channel with little history leans on the rate over all channels, as if it had this many sends.
POOLED_PSEUDO_SENDS = 20.0
NO_CHANNEL = -1

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
Reason = Literal["no_candidates", "none_eligible"]


@dataclass(frozen=True)
class ChannelCounts:
    """One person's (or everyone's pooled) sends on a channel and the engagements that followed."""

    sends: int
    engagements: int

    def __post_init__(self) -> None:
        if not 0 <= self.engagements <= self.sends:
            raise ValueError("counts must satisfy 0 <= engagements <= sends")


@dataclass(frozen=True)
class ChannelPrior:
    """The population's engagement per send on a channel, and its weight in sends: a person with
    no history on the channel starts at Beta(strength·mean, strength·(1 - mean))."""

    mean: float
    strength: float


@dataclass(frozen=True)
class ChannelChoice:
    """The channel to send on (None and a `reason` when there is none), the fallback order that
    starts with it, whether exploration picked it, and its probability under the policy, logged
    for offline evaluation.

    `probabilities` has every eligible candidate's probability of being chosen; they sum to 1.
    """

    channel: str | None
    ranking: tuple[str, ...]
    explored: bool
    probability: float
    probabilities: Mapping[str, float]
    reason: Reason | None = None


@dataclass(frozen=True)
class ChannelChoices:
    """Choices for n people over the same c channels (the columns), as column indices.

    `chosen` (n,) is NO_CHANNEL where nothing is eligible; `explored` (n,) says exploration picked
    it; `ranking` (n, c) is the fallback order, padded with NO_CHANNEL; `probabilities` (n, c) is
    0 for channels that are not eligible.
    """

    chosen: IntArray
    explored: BoolArray
    ranking: IntArray
    probabilities: FloatArray


def fit_channel_priors(
    channels: Sequence[str],
    sends: ArrayLike,
    engagements: ArrayLike,
    strength_range: tuple[float, float] = STRENGTH_RANGE,
) -> dict[str, ChannelPrior]:
    """Each channel's prior from everyone's counts, shape (n, c) with `channels` as the columns.

    The mean is the channel's pooled rate, leaning on the rate over all channels while it has few
    sends; the strength maximises the Beta-Binomial marginal likelihood of people's counts.
    """
    sends_, engagements_ = _counts(sends, engagements)
    if sends_.shape[-1] != len(channels):
        raise ValueError("one column of counts per channel")
    pooled_sends = sends_.reshape(-1, len(channels)).sum(axis=0)
    pooled_engagements = engagements_.reshape(-1, len(channels)).sum(axis=0)
    overall = (pooled_engagements.sum() + 1.0) / (pooled_sends.sum() + 2.0)
    means = (pooled_engagements + POOLED_PSEUDO_SENDS * overall) / (
        pooled_sends + POOLED_PSEUDO_SENDS
    )
    return {
        channel: ChannelPrior(
            float(means[column]),
            fit_strength(
                sends_[..., column], engagements_[..., column], means[column], strength_range
            ),
        )
        for column, channel in enumerate(channels)
    }


def choose_channels(
    sends: ArrayLike,
    engagements: ArrayLike,
    eligible: ArrayLike,
    priors: Sequence[ChannelPrior],
    rng: np.random.Generator,
    *,
    explore_share: float = EXPLORE_SHARE,
) -> ChannelChoices:
    """The channel for n people at once: counts and `eligible` are shape (n, c).

    Each person gets the eligible channel with the highest posterior mean, except that with
    probability `explore_share` it is drawn uniformly from their eligible channels. The fallbacks
    are the other eligible channels by posterior mean: a fallback is not the place to explore.
    Every eligible channel's probability is exact and at least explore_share / eligible count.
    """
    if not 0.0 <= explore_share <= 1.0:
        raise ValueError("explore_share must be within [0, 1]")
    alpha, beta = _posterior(sends, engagements, priors)
    allowed = np.asarray(eligible, dtype=np.bool_)
    if allowed.shape != alpha.shape:
        raise ValueError("eligible must have the shape of the counts")
    means = alpha / (alpha + beta)
    any_allowed = allowed.any(axis=1)
    best = np.where(any_allowed, _best_allowed(means, allowed), NO_CHANNEL)
    uniform = _best_allowed(rng.random(allowed.shape), allowed)
    explored = (rng.random(best.size) < explore_share) & any_allowed
    chosen: IntArray = np.where(explored, uniform, best)
    share = explore_share / np.maximum(allowed.sum(axis=1, keepdims=True), 1)
    probabilities = np.where(allowed, share, 0.0) + (1.0 - explore_share) * _one_hot(
        best, means.shape[1]
    )
    ranking = _fallback_order(means, allowed, chosen)
    return ChannelChoices(chosen, explored, ranking, probabilities)


def rank_channels(
    candidates: Sequence[str],
    eligible: Collection[str],
    person: Mapping[str, ChannelCounts],
    population: Mapping[str, ChannelPrior],
    rng: np.random.Generator,
    *,
    explore_share: float = EXPLORE_SHARE,
) -> ChannelChoice:
    """The channel for one send that names `candidates`, in the order a send would try them.

    `eligible` holds the channels the person has both consent and an address for; the others are
    never chosen nor tried. Counts missing from `person` are zero; a candidate the population has
    no prior for starts at the average of the known channels' means, at the weakest strength.
    """
    names = list(dict.fromkeys(candidates))
    if not names:
        return ChannelChoice(None, (), False, 0.0, {}, "no_candidates")
    allowed = [name in eligible for name in names]
    if not any(allowed):
        return ChannelChoice(None, (), False, 0.0, {}, "none_eligible")
    counts = [person.get(name, ChannelCounts(0, 0)) for name in names]
    choices = choose_channels(
        [[count.sends for count in counts]],
        [[count.engagements for count in counts]],
        [allowed],
        [_prior_for(name, population) for name in names],
        rng,
        explore_share=explore_share,
    )
    chosen = int(choices.chosen[0])
    ranking = tuple(names[column] for column in choices.ranking[0] if column != NO_CHANNEL)
    probabilities = {
        name: float(choices.probabilities[0, column])
        for column, name in enumerate(names)
        if allowed[column]
    }
    return ChannelChoice(
        names[chosen],
        ranking,
        bool(choices.explored[0]),
        probabilities[names[chosen]],
        probabilities,
    )


def _posterior(
    sends: ArrayLike, engagements: ArrayLike, priors: Sequence[ChannelPrior]
) -> tuple[FloatArray, FloatArray]:
    sends_, engagements_ = _counts(sends, engagements)
    if sends_.ndim != 2 or sends_.shape[1] != len(priors):
        raise ValueError("counts must be shape (people, channels), one prior per channel")
    means = np.asarray([prior.mean for prior in priors], dtype=np.float64)
    strengths = np.asarray([prior.strength for prior in priors], dtype=np.float64)
    alpha = strengths * means + engagements_
    beta = strengths * (1.0 - means) + sends_ - engagements_
    return alpha, beta


def _best_allowed(scores: FloatArray, allowed: BoolArray) -> IntArray:
    """Per row, the allowed column with the highest score (column 0 when none is allowed)."""
    best: IntArray = np.argmax(np.where(allowed, scores, -np.inf), axis=1).astype(np.int64)
    return best


def _fallback_order(means: FloatArray, allowed: BoolArray, chosen: IntArray) -> IntArray:
    """The chosen channel first, then the other allowed ones by posterior mean, then padding."""
    keys = np.where(allowed, means, -np.inf)
    rows = np.flatnonzero(chosen != NO_CHANNEL)
    keys[rows, chosen[rows]] = np.inf
    order = np.argsort(-keys, axis=1, kind="stable")
    ranking: IntArray = np.where(np.take_along_axis(allowed, order, axis=1), order, NO_CHANNEL)
    return ranking


def _one_hot(chosen: IntArray, channels: int) -> FloatArray:
    """Row i has a 1 in column chosen[i]; a row with NO_CHANNEL stays all zeros."""
    hot: FloatArray = (chosen[:, None] == np.arange(channels)[None, :]).astype(np.float64)
    return hot


def _prior_for(channel: str, population: Mapping[str, ChannelPrior]) -> ChannelPrior:
    if channel in population:
        return population[channel]
    known = [prior.mean for prior in population.values()]
    return ChannelPrior(float(np.mean(known)) if known else 0.5, STRENGTH_RANGE[0])


def _counts(sends: ArrayLike, engagements: ArrayLike) -> tuple[FloatArray, FloatArray]:
    sends_ = np.asarray(sends, dtype=np.float64)
    engagements_ = np.asarray(engagements, dtype=np.float64)
    if sends_.shape != engagements_.shape or sends_.ndim == 0:
        raise ValueError("sends and engagements must be arrays of the same shape")
    if (engagements_ < 0).any() or (engagements_ > sends_).any():
        raise ValueError("counts must satisfy 0 <= engagements <= sends")
    return sends_, engagements_

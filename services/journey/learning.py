"""A person's best send hour and best channel, from their engagement and the population's priors.

Pure: the runner loads the counts of the profiles it moves and hands them in with the priors last
fitted; the engine asks for a decision when a run reaches a best-time wait or a send on several
channels. The models are timing.py and channel_choice.py (docs/models/).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from services.journey.channel_choice import (
    ChannelChoice,
    ChannelCounts,
    ChannelPrior,
    fit_channel_priors,
    rank_channels,
)
from services.journey.timing import (
    EXPLORE_SHARE,
    HOURS,
    HourPrior,
    best_hour,
    best_time_within,
    fit_prior,
    posterior_means,
)

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class CountRow:
    """One person's sends on a channel at a local hour, and how many were engaged with."""

    profile_id: str
    channel: str
    hour: int
    sends: int
    engaged: int


@dataclass(frozen=True)
class PopulationRow:
    """Everyone's untargeted sends on a channel at a local hour, and how many were engaged."""

    channel: str
    hour: int
    sends: int
    engaged: int


@dataclass
class PersonCounts:
    """One person's sends and engagements by channel, each an array over the 24 local hours."""

    sends: dict[str, IntArray] = field(default_factory=dict)
    engaged: dict[str, IntArray] = field(default_factory=dict)

    def hours(self, channel: str) -> tuple[IntArray, IntArray]:
        empty = np.zeros(HOURS, dtype=np.int64)
        return self.sends.get(channel, empty), self.engaged.get(channel, empty)

    def by_channel(self) -> dict[str, ChannelCounts]:
        return {
            channel: ChannelCounts(int(sends.sum()), int(self.engaged[channel].sum()))
            for channel, sends in self.sends.items()
        }


def people_counts(rows: Iterable[CountRow]) -> dict[str, PersonCounts]:
    """Rows as loaded, gathered by person."""
    people: dict[str, PersonCounts] = {}
    for row in rows:
        person = people.setdefault(row.profile_id, PersonCounts())
        sends = person.sends.setdefault(row.channel, np.zeros(HOURS, dtype=np.int64))
        engaged = person.engaged.setdefault(row.channel, np.zeros(HOURS, dtype=np.int64))
        sends[row.hour] += row.sends
        engaged[row.hour] += row.engaged
    return people


def _uninformed_hours() -> HourPrior:
    none = np.zeros((0, HOURS))
    return fit_prior(none, none, np.zeros(HOURS), np.zeros(HOURS))


@dataclass(frozen=True)
class Priors:
    """What the population says before a person's own counts: per channel, the send-time
    model's prior over hours and the channel's engagement prior."""

    hours: Mapping[str, HourPrior] = field(default_factory=dict)
    channels: Mapping[str, ChannelPrior] = field(default_factory=dict)
    # A channel nobody has been sent on yet: a flat curve at the weakest strength.
    unknown_hours: HourPrior = field(default_factory=_uninformed_hours)

    def hour_prior(self, channel: str) -> HourPrior:
        return self.hours.get(channel, self.unknown_hours)


def fit_priors(rows: Sequence[CountRow], untargeted: Sequence[PopulationRow]) -> Priors:
    """Fit every channel's priors: the hour curve from the untargeted sends, the strengths and
    the channel rates from people's counts (`rows`, any sample of people)."""
    channels = sorted({row.channel for row in rows} | {row.channel for row in untargeted})
    if not channels:
        return Priors()
    column = {channel: index for index, channel in enumerate(channels)}
    sends, engaged = _people_arrays(rows, column)
    pooled_sends = np.zeros((len(channels), HOURS))
    pooled_engaged = np.zeros_like(pooled_sends)
    for pooled in untargeted:
        pooled_sends[column[pooled.channel], pooled.hour] += pooled.sends
        pooled_engaged[column[pooled.channel], pooled.hour] += pooled.engaged
    hours = {}
    for index, channel in enumerate(channels):
        reached = sends[:, index].sum(axis=1) > 0
        hours[channel] = fit_prior(
            sends[reached, index],
            engaged[reached, index],
            pooled_sends[index],
            pooled_engaged[index],
        )
    rates = fit_channel_priors(channels, sends.sum(axis=2), engaged.sum(axis=2))
    return Priors(hours, rates)


def _people_arrays(
    rows: Sequence[CountRow], column: Mapping[str, int]
) -> tuple[FloatArray, FloatArray]:
    """Sends and engagements as (person, channel, hour) arrays."""
    people = {profile_id: index for index, profile_id in enumerate({r.profile_id for r in rows})}
    sends = np.zeros((len(people), len(column), HOURS))
    engaged = np.zeros_like(sends)
    for row in rows:
        sends[people[row.profile_id], column[row.channel], row.hour] += row.sends
        engaged[people[row.profile_id], column[row.channel], row.hour] += row.engaged
    return sends, engaged


class Policy:
    """What every learned decision of one process follows: the priors last fitted (replaced
    whole by the refit) and the share of decisions that explore."""

    def __init__(self, explore_share: float = EXPLORE_SHARE) -> None:
        self.priors = Priors()
        self.explore_share = explore_share

    def learning(self, people: Mapping[str, PersonCounts]) -> Learning:
        return Learning(self.priors, people, self.explore_share)


@dataclass(frozen=True)
class SendTime:
    """The local hour chosen, whether exploration chose it, its probability under the policy,
    and when the wait ends: the next time the person's clock shows it within the window."""

    hour: int
    explored: bool
    probability: float
    wake_at: datetime


class Learning:
    """Decisions from the priors and the counts of the people one transaction moves (a person
    missing from `people` has no evidence yet). Each decision draws from a generator seeded by
    the step, so the same step of the same run decides the same way."""

    def __init__(
        self, priors: Priors, people: Mapping[str, PersonCounts], explore_share: float
    ) -> None:
        self._priors = priors
        self._people = people
        self._explore_share = explore_share

    def send_time(
        self,
        profile_id: str,
        channel: str,
        seed: str,
        now: datetime,
        zone: str | None,
        within: timedelta,
    ) -> SendTime:
        """The person's hour on the channel, and the first time within the window it comes."""
        sends, engaged = self._person(profile_id).hours(channel)
        prior = self._priors.hour_prior(channel)
        choice = best_hour(
            sends, engaged, prior, _generator(seed), explore_share=self._explore_share
        )
        # The chosen hour first, then the others by posterior mean: a window too short to reach
        # the chosen hour gets the best hour it does reach.
        scores = posterior_means(sends, engaged, prior)
        scores[choice.hour] = scores.max() + 1.0
        wake_at = best_time_within(now, zone, within, scores)
        return SendTime(choice.hour, choice.explored, choice.probability, wake_at)

    def channel(
        self, profile_id: str, candidates: Sequence[str], eligible: Sequence[str], seed: str
    ) -> ChannelChoice:
        """The channel to send on among the eligible candidates, and the order of fallbacks."""
        return rank_channels(
            candidates,
            eligible,
            self._person(profile_id).by_channel(),
            self._priors.channels,
            _generator(seed),
            explore_share=self._explore_share,
        )

    def _person(self, profile_id: str) -> PersonCounts:
        return self._people.get(profile_id) or PersonCounts()


NO_EVIDENCE = Learning(Priors(), {}, EXPLORE_SHARE)
"""Decisions before anything is known: the population's default, the person's none."""


def _generator(seed: str) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8]))

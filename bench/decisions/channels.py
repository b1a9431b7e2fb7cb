"""Simulator scenario: channels chosen by services/journey/channel_choice.py against fixed orders.

Each planted person has a true engagement rate per delivered send on each channel (email, sms,
push): a population median per channel, a shared appetite for messages, and a person's own
liking of each channel, so that the best channel differs by person. Some people lack consent or
an address for a channel, and some addresses on file are dead (the send bounces and the next
channel in the ranking is tried; the address is then known dead). Every simulated day every
person gets one multi-channel send. The baseline is the best fixed channel order: the one
priority list (such as email, then sms, then push) that the oracle found best for the whole
population, tried in that order among each person's eligible channels, with the same fallback
on a bounce. The oracle sends each person on their truly best deliverable channel. One uniform
draw per person and day decides engagement for all three (common random numbers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import permutations
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench.decisions.result import Curve, Figure, ScenarioResult
from services.journey.channel_choice import NO_CHANNEL, choose_channels, fit_channel_priors

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

PRIOR_REFIT_DAYS = 7


@dataclass(frozen=True)
class World:
    """The planted truth: rates (n, c), consent and address (n, c), and which addresses bounce."""

    channels: list[str]
    rates: FloatArray
    eligible: BoolArray
    dead: BoolArray

    @property
    def deliverable(self) -> BoolArray:
        usable: BoolArray = self.eligible & ~self.dead
        return usable


@dataclass
class Arm:
    """One way of choosing: the dead addresses it has found, engagements per day, its mistakes."""

    known_dead: BoolArray
    engaged: list[int] = field(default_factory=list)
    bounces: int = 0
    ineligible_tried: int = 0


def run(truth: Mapping[str, Any], seed: int) -> ScenarioResult:
    """Plant the people, give them a history, simulate the days, score against the references."""
    rng = np.random.default_rng(seed)
    world = plant(truth, rng)
    sends, engagements = history(truth, world, rng)
    order = best_fixed_order(world)
    arms = {name: Arm(np.zeros_like(world.dead)) for name in ("policy", "fixed", "oracle")}
    rows = np.arange(world.rates.shape[0])
    priors = fit_channel_priors(world.channels, sends, engagements)
    for day in range(int(truth["days"])):
        if day % PRIOR_REFIT_DAYS == 0:
            priors = fit_channel_priors(world.channels, sends, engagements)
        draw = rng.random(rows.size)
        allowed = world.eligible & ~arms["policy"].known_dead
        choices = choose_channels(
            sends,
            engagements,
            allowed,
            [priors[name] for name in world.channels],
            rng,
        )
        delivered, engaged = send(world, arms["policy"], choices.ranking, draw)
        hit = delivered != NO_CHANNEL
        sends[rows[hit], delivered[hit]] += 1.0
        engagements[rows[hit], delivered[hit]] += engaged[hit]
        fixed_allowed = world.eligible & ~arms["fixed"].known_dead
        send(world, arms["fixed"], fixed_ranking(order, fixed_allowed), draw)
        send(world, arms["oracle"], oracle_ranking(world), draw)
    return score(truth, world, order, arms, priors)


def plant(truth: Mapping[str, Any], rng: np.random.Generator) -> World:
    """Logit rates: channel median + spread·(shared appetite + the person's own liking)."""
    people = int(truth["people"])
    specs: Mapping[str, Mapping[str, Any]] = truth["channels"]
    channels = list(specs)
    median = np.asarray([specs[name]["median_rate"] for name in channels], dtype=np.float64)
    spread = np.asarray([specs[name]["spread"] for name in channels], dtype=np.float64)
    shared = float(truth["shared_appetite"])
    appetite = rng.normal(size=(people, 1))
    liking = rng.normal(size=(people, len(channels)))
    deviation = np.sqrt(shared) * appetite + np.sqrt(1.0 - shared) * liking
    rates = 1.0 / (1.0 + np.exp(-(np.log(median / (1.0 - median)) + spread * deviation)))
    eligible = rng.random((people, len(channels))) < [specs[name]["eligible"] for name in channels]
    dead = eligible & (rng.random(eligible.shape) < [specs[n]["dead_address"] for n in channels])
    return World(channels, rates, eligible, dead)


def history(
    truth: Mapping[str, Any], world: World, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """Past sends per channel to everyone eligible, from when their addresses still worked."""
    per_channel = [truth["channels"][name]["history_sends"] for name in world.channels]
    sends: FloatArray = np.where(world.eligible, np.asarray(per_channel, dtype=np.float64), 0.0)
    engagements = rng.binomial(sends.astype(np.int64), world.rates).astype(np.float64)
    return sends, engagements


def best_fixed_order(world: World) -> tuple[int, ...]:
    """The channel order that, tried among each person's deliverable channels, engages most."""
    columns = range(len(world.channels))
    return max(permutations(columns), key=lambda order: _expected(world, order))


def fixed_ranking(order: Sequence[int], allowed: BoolArray) -> IntArray:
    """Everyone's ranking by one fixed order, leaving out the channels they are not allowed."""
    position = np.empty(len(order), dtype=np.float64)
    position[list(order)] = np.arange(len(order))
    return _ranking(np.where(allowed, -position, -np.inf), allowed)


def oracle_ranking(world: World) -> IntArray:
    """The truly best deliverable channel first: the oracle knows which addresses are dead."""
    return _ranking(np.where(world.deliverable, world.rates, -np.inf), world.deliverable)


def send(world: World, arm: Arm, ranking: IntArray, draw: FloatArray) -> tuple[IntArray, BoolArray]:
    """Try each person's ranking until a send is delivered; a bounce marks that address dead.

    Returns the channel delivered on (NO_CHANNEL if none) and whether the person engaged.
    """
    rows = np.arange(ranking.shape[0])
    delivered = np.full(rows.size, NO_CHANNEL, dtype=np.int64)
    for column in ranking.T:
        trying = (delivered == NO_CHANNEL) & (column != NO_CHANNEL)
        channel = np.where(trying, column, 0)
        arm.ineligible_tried += int(np.sum(trying & ~world.eligible[rows, channel]))
        bounced = trying & world.dead[rows, channel]
        arm.known_dead[rows[bounced], channel[bounced]] = True
        arm.bounces += int(bounced.sum())
        delivered = np.where(trying & ~bounced, channel, delivered)
    hit = delivered != NO_CHANNEL
    engaged = hit & (draw < world.rates[rows, np.where(hit, delivered, 0)])
    arm.engaged.append(int(engaged.sum()))
    return delivered, engaged


def score(
    truth: Mapping[str, Any],
    world: World,
    order: Sequence[int],
    arms: Mapping[str, Arm],
    priors: Mapping[str, Any],
) -> ScenarioResult:
    """Engagement after warm-up against the best fixed order, and the oracle's."""
    warmup = int(truth["warmup_days"])
    after = {name: sum(arm.engaged[warmup:]) for name, arm in arms.items()}
    person_days = world.rates.shape[0] * (int(truth["days"]) - warmup)
    fixed, oracle = after["fixed"], after["oracle"]
    order_name = ", then ".join(world.channels[column] for column in order)
    figures = [
        Figure("engagement vs best fixed channel order", after["policy"] / fixed - 1.0),
        Figure("oracle engagement vs best fixed channel order", oracle / fixed - 1.0),
        Figure("share of the oracle's gain captured", (after["policy"] - fixed) / (oracle - fixed)),
        Figure("oracle engagement per person and day", oracle / person_days),
        Figure("ineligible channels tried", float(arms["policy"].ineligible_tried), 0.0, False),
    ]
    details = {
        "best fixed order": order_name,
        "engagement per person and day after warm-up": {
            name: total / person_days for name, total in after.items()
        },
        "best single channel, no fallback, per person and day": _best_single(world),
        "people with no eligible channel": int((~world.eligible.any(axis=1)).sum()),
        "bounces": {name: arm.bounces for name, arm in arms.items()},
        "priors at the end": {name: vars(prior) for name, prior in priors.items()},
    }
    curves = [
        Curve("policy (channel_choice.py)", _cumulative(arms["policy"].engaged)),
        Curve(f"best fixed order ({order_name})", _cumulative(arms["fixed"].engaged)),
        Curve("oracle (true best channel)", _cumulative(arms["oracle"].engaged)),
    ]
    return ScenarioResult(
        "channels",
        figures,
        curves,
        x_label="day",
        y_label="cumulative engagements",
        details=details,
    )


def _expected(world: World, order: Sequence[int]) -> float:
    """Expected engagements per day of a fixed order once dead addresses are known."""
    ranking = fixed_ranking(order, world.deliverable)
    first = ranking[:, 0]
    rows = np.flatnonzero(first != NO_CHANNEL)
    return float(world.rates[rows, first[rows]].sum())


def _best_single(world: World) -> float:
    """Expected engagement per person and day of the best one channel, where deliverable."""
    totals = np.where(world.deliverable, world.rates, 0.0).sum(axis=0)
    return float(totals.max() / world.rates.shape[0])


def _ranking(keys: FloatArray, allowed: BoolArray) -> IntArray:
    order = np.argsort(-keys, axis=1, kind="stable")
    ranking: IntArray = np.where(np.take_along_axis(allowed, order, axis=1), order, NO_CHANNEL)
    return ranking


def _cumulative(values: Sequence[int]) -> list[float]:
    return [float(total) for total in np.cumsum(values)]

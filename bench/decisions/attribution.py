"""Simulator scenario: data-driven (Markov) attribution against a planted world of journeys.

People move through a first-order Markov chain of channel touches (section `attribution` of
truth.json): a first touch drawn from `start`, then from each touch another channel (`next`), a
conversion (`convert`) or the end of the journey (the rest), at exponential gaps of
`mean_gap_hours`.
Channels with `utm` tags are campaign calls whose tags services/attribution/campaigns.py must
map back to the channel; the others are `message.sent` touchpoints.

The planted share of a channel is its true removal effect, normalised over the channels: the
fraction of conversions the world loses when the channel is switched off (every step into it
ends the journey instead), computed exactly from the true parameters. The service's own code
(paths.py, credit_report.py, markov.py) sees only the touches and conversions, builds the
range's paths, fits the chain and reports; last touch on the same paths shows what a rule
model reports instead. The per-conversion Markov credits, summed, are fitted to the removal
shares; how near they come is a figure of its own. docs/models/attribution.md says what the
comparison does and does not show.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench.decisions.result import Curve, Figure, ScenarioResult
from libs.common.values import parse_duration
from services.attribution.campaigns import CampaignTouch, campaign_channel
from services.attribution.credit_report import CreditReport, fit, report
from services.attribution.definitions import ConversionDefinition
from services.attribution.paths import (
    Conversion,
    CreditRule,
    RangePaths,
    Span,
    Touchpoint,
    range_paths,
)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

MARKOV_ERROR_TARGET = 5.0
"""Points: the largest gap between a channel's planted share and its Markov share."""
START = datetime(2025, 1, 1, tzinfo=UTC)
DEFINITION = "purchase"
MAX_STEPS = 200
"""Journeys still going after this many touches are cut (their chance is negligible)."""
CHECKPOINTS = 6
"""The Markov error is also measured on the first 1/6, 2/6, … of the people."""


@dataclass(frozen=True)
class World:
    """The planted chain: channels, first-touch chances, steps between channels, conversions."""

    channels: list[str]
    start: FloatArray
    steps: FloatArray
    convert: FloatArray
    utm: dict[str, tuple[str, str]]
    people: int
    days: float
    mean_gap_hours: float
    window: timedelta
    value_mean: float
    currency: str

    @classmethod
    def from_truth(cls, truth: Mapping[str, Any]) -> World:
        channels = list(truth["channels"])
        planted = [truth["channels"][name] for name in channels]
        world = cls(
            channels=channels,
            start=np.array([float(c["start"]) for c in planted]),
            steps=np.array([[float(c["next"].get(to, 0.0)) for to in channels] for c in planted]),
            convert=np.array([float(c["convert"]) for c in planted]),
            utm={
                name: (c["utm"]["source"], c["utm"]["medium"])
                for name, c in zip(channels, planted, strict=True)
                if "utm" in c
            },
            people=int(truth["people"]),
            days=float(truth["days"]),
            mean_gap_hours=float(truth["mean_gap_hours"]),
            window=parse_duration(truth["window"]),
            value_mean=float(truth["value"]["mean"]),
            currency=str(truth["value"]["currency"]),
        )
        world.check(truth)
        return world

    def check(self, truth: Mapping[str, Any]) -> None:
        unknown = {to for c in truth["channels"].values() for to in c["next"]} - {*self.channels}
        if unknown:
            raise ValueError(f"attribution: `next` names unknown channels {sorted(unknown)}")
        if not np.isclose(self.start.sum(), 1.0):
            raise ValueError("attribution: the `start` chances must sum to 1")
        if np.any(self.steps.sum(axis=1) + self.convert > 1.0 + 1e-9):
            raise ValueError("attribution: a channel's `next` and `convert` exceed 1")
        for name, (source, medium) in self.utm.items():
            if campaign_channel(source, medium) != name:
                raise ValueError(f"attribution: the utm tags of {name!r} map to another channel")

    def conversion_probability(self, removed: int | None = None) -> float:
        """P(convert) from the first touch; a removed channel's steps in end the journey."""
        kept = [i for i in range(len(self.channels)) if i != removed]
        steps = self.steps[np.ix_(kept, kept)]
        reach = np.linalg.solve(np.eye(len(kept)) - steps, self.convert[kept])
        return float(self.start[kept] @ reach)


@dataclass(frozen=True)
class Journeys:
    """What the service would have stored: touchpoints, campaign calls, conversions."""

    touches: list[tuple[str, Touchpoint]]
    campaigns: list[CampaignTouch]
    conversions: list[Conversion]

    def of_first(self, people: int) -> Journeys:
        """The journeys of profiles prf_0 … prf_{people - 1}."""
        return Journeys(
            [(p, t) for p, t in self.touches if _number(p) < people],
            [c for c in self.campaigns if _number(c.profile_id) < people],
            [c for c in self.conversions if _number(c.profile_id) < people],
        )


def planted_shares(world: World) -> dict[str, float]:
    """Each channel's true removal effect over the sum of them."""
    total = world.conversion_probability()
    effects = [
        1.0 - world.conversion_probability(removed=i) / total for i in range(len(world.channels))
    ]
    return {
        name: effect / sum(effects) for name, effect in zip(world.channels, effects, strict=True)
    }


def simulate(world: World, rng: np.random.Generator) -> Journeys:
    """Every person's journey, stepped for all people at once."""
    n = len(world.channels)
    # Per channel, the cumulative chances of: each next channel, then converting; past: the end.
    thresholds = np.cumsum(np.hstack([world.steps, world.convert[:, None]]), axis=1)
    person = np.arange(world.people)
    state = rng.choice(n, size=world.people, p=world.start)
    hours = rng.uniform(0.0, world.days * 24.0, size=world.people)
    journeys = Journeys([], [], [])
    for step in range(MAX_STEPS):
        if person.size == 0:
            break
        _record_touches(world, journeys, step, person, state, hours)
        following = (rng.random(person.size)[:, None] >= thresholds[state]).sum(axis=1)
        hours = hours + rng.exponential(world.mean_gap_hours, size=person.size)
        converted = following == n
        values = rng.exponential(world.value_mean, size=int(converted.sum()))
        for who, at, value in zip(person[converted], hours[converted], values, strict=True):
            journeys.conversions.append(
                Conversion(
                    f"cnv_{who}",
                    DEFINITION,
                    f"prf_{who}",
                    _time(at),
                    Decimal(f"{value:.2f}"),
                    world.currency,
                )
            )
        going = following < n
        person, state, hours = person[going], following[going], hours[going]
    return journeys


@dataclass(frozen=True)
class Shares:
    """Each channel's share of the conversions: planted, and as the service reports it."""

    planted: dict[str, float]
    markov: dict[str, float]
    """The removal effect over the sum of the channels' effects."""
    markov_credit: dict[str, float]
    """The per-conversion Markov credits summed, over all credits: the removal shares where the
    paths allow it (credit_report.calibrate)."""
    last_touch: dict[str, float]


def run(truth: Mapping[str, Any], seed: int) -> ScenarioResult:
    world = World.from_truth(truth)
    journeys = simulate(world, np.random.default_rng(seed))
    span = Span(START, START + timedelta(days=world.days) + 4 * world.window)
    rules = {
        DEFINITION: CreditRule.of(
            ConversionDefinition(name=DEFINITION, event="order_completed", window=world.window)
        )
    }
    markov, last_touch = _reports(journeys, span, rules)
    shares = Shares(
        planted=planted_shares(world),
        markov={name: markov.chain.effect_of(name).share for name in world.channels},
        markov_credit=_credit_shares(markov, world.channels),
        last_touch=_credit_shares(last_touch, world.channels),
    )
    figures = _figures(world, shares)
    curve = [*_convergence(world, journeys, span, rules, shares.planted), figures[0].value]
    return ScenarioResult(
        "attribution",
        figures,
        [Curve("Markov share, largest error (pts)", curve)],
        x_label=f"people, in steps of {world.people // CHECKPOINTS}",
        y_label="largest share error (points)",
        details=_details(world, shares, markov),
    )


def _figures(world: World, shares: Shares) -> list[Figure]:
    figures = [
        Figure(
            "Markov share, largest error",
            _largest_gap(shares.planted, shares.markov),
            target=MARKOV_ERROR_TARGET,
            at_least=False,
            unit=" pts",
        ),
        Figure(
            "last-touch share, largest error",
            _largest_gap(shares.planted, shares.last_touch),
            unit=" pts",
        ),
        Figure(
            "Markov per-conversion credit, largest error",
            _largest_gap(shares.planted, shares.markov_credit),
            unit=" pts",
        ),
        Figure(
            "Markov per-conversion credit, largest gap to the removal shares",
            _largest_gap(shares.markov, shares.markov_credit),
            unit=" pts",
        ),
    ]
    for name in world.channels:
        figures += [
            Figure(f"{name}: planted share", 100.0 * shares.planted[name], unit="%"),
            Figure(f"{name}: Markov share", 100.0 * shares.markov[name], unit="%"),
            Figure(f"{name}: Markov credit share", 100.0 * shares.markov_credit[name], unit="%"),
            Figure(f"{name}: last-touch share", 100.0 * shares.last_touch[name], unit="%"),
        ]
    return figures


def _details(world: World, shares: Shares, markov: CreditReport) -> dict[str, Any]:
    return {
        "channels": {
            name: {
                "planted_share": shares.planted[name],
                "markov_share": shares.markov[name],
                "markov_credit_share": shares.markov_credit[name],
                "last_touch_share": shares.last_touch[name],
                "markov_removal_effect": markov.chain.effect_of(name).removal_effect,
            }
            for name in world.channels
        },
        "conversion_probability": {
            "planted": world.conversion_probability(),
            "fitted": markov.chain.conversion_probability,
        },
        "paths": {"converting": markov.conversions, "null": markov.null_paths},
        "markov_credit_fit": _calibration(markov),
    }


def _calibration(markov: CreditReport) -> dict[str, Any]:
    """How near the summed per-conversion credits came to the conversions x removal shares."""
    fitted = markov.calibration
    if fitted is None:
        return {}
    return {
        "residual_conversions": fitted.residual,
        "steps": fitted.steps,
        "converged": fitted.converged,
        "targets": fitted.targets,
        "credited": fitted.credited,
    }


def _reports(
    journeys: Journeys, span: Span, rules: Mapping[str, CreditRule]
) -> tuple[CreditReport, CreditReport]:
    """The service's Markov and last-touch reports by channel over the journeys."""
    paths = _paths(journeys, span, rules)
    chain = fit(paths)
    return (
        report("markov", "channel", paths, rules, chain),
        report("last_touch", "channel", paths, rules, chain),
    )


def _convergence(
    world: World,
    journeys: Journeys,
    span: Span,
    rules: Mapping[str, CreditRule],
    planted: Mapping[str, float],
) -> list[float]:
    """The Markov share error on the first 1/CHECKPOINTS, 2/CHECKPOINTS, … of the people."""
    errors = []
    for checkpoint in range(1, CHECKPOINTS):
        people = world.people * checkpoint // CHECKPOINTS
        chain = fit(_paths(journeys.of_first(people), span, rules))
        errors.append(_largest_gap(planted, {n: chain.effect_of(n).share for n in planted}))
    return errors


def _paths(journeys: Journeys, span: Span, rules: Mapping[str, CreditRule]) -> RangePaths:
    return range_paths(span, rules, journeys.touches, journeys.campaigns, journeys.conversions)


def _record_touches(
    world: World,
    journeys: Journeys,
    step: int,
    person: IntArray,
    state: IntArray,
    hours: FloatArray,
) -> None:
    for who, channel, at in zip(person, state, hours, strict=True):
        name, profile, moment = world.channels[channel], f"prf_{who}", _time(at)
        touch_id = f"{who}_{step}"
        if name in world.utm:
            source, medium = world.utm[name]
            journeys.campaigns.append(
                CampaignTouch(f"ajs_{touch_id}", profile, moment, name, source, medium, "spring")
            )
        else:
            journeys.touches.append(
                (
                    profile,
                    Touchpoint(
                        f"msg_{touch_id}", moment, "message.sent", name, f"jrn_{name}", "send"
                    ),
                )
            )


def _credit_shares(credit: CreditReport, channels: list[str]) -> dict[str, float]:
    earned = {str(row.key["channel"]): row.conversions for row in credit.rows}
    total = sum(earned.values())
    return {name: earned.get(name, 0.0) / total for name in channels}


def _largest_gap(planted: Mapping[str, float], estimated: Mapping[str, float]) -> float:
    return 100.0 * max(abs(planted[name] - estimated[name]) for name in planted)


def _time(hours: float) -> datetime:
    return START + timedelta(hours=float(hours))


def _number(profile_id: str) -> int:
    return int(profile_id.removeprefix("prf_"))

"""What one scenario of the simulator reports: figures with their targets, and curves to draw."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Figure:
    """One printed figure; `target` is the acceptance bar, `at_least` says which side passes."""

    name: str
    value: float
    target: float | None = None
    at_least: bool = True
    unit: str = ""

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        return self.value >= self.target if self.at_least else self.value <= self.target


@dataclass(frozen=True)
class Curve:
    """A series over simulated steps (days or rounds), e.g. cumulative regret per policy."""

    label: str
    values: list[float]


@dataclass
class ScenarioResult:
    """A scenario's figures, its curves (one plot per scenario) and anything else for the JSON."""

    name: str
    figures: list[Figure]
    curves: list[Curve] = field(default_factory=list)
    x_label: str = "step"
    y_label: str = "value"
    details: dict[str, Any] = field(default_factory=dict)

    def figure(self, name: str) -> Figure:
        return next(f for f in self.figures if f.name == name)

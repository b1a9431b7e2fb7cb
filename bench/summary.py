"""The combined run's one table: every figure beside its raw ceiling, ratio and target.

Each scenario turns its rates into `Figure`s; this module prints them as one table, keeps them
as JSON (bench/results/all.json and a copy named by commit and time, so two commits can be
compared) and compares two such files figure by figure.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.report import RESULTS_DIR

_REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Target:
    """A bound on a figure's value (`on="value"`) or on its ratio to the raw ceiling."""

    bound: float
    on: Literal["value", "ratio"] = "value"
    at_most: bool = False  # below the bound; at it too when `or_equal`
    or_equal: bool = False

    def met_by(self, value: float, ratio: float | None) -> bool | None:
        measured = value if self.on == "value" else ratio
        if measured is None or math.isnan(measured):
            return None
        if self.at_most:
            return measured <= self.bound if self.or_equal else measured < self.bound
        return measured >= self.bound

    def describe(self, unit: str) -> str:
        sign = ("≤" if self.or_equal else "<") if self.at_most else "≥"
        if self.on == "ratio":
            return f"{sign} {self.bound:g} of raw"
        return f"{sign} {_number(self.bound)} {unit}"


@dataclass(frozen=True)
class Figure:
    """One measured figure, the raw ceiling it is compared with (if any) and its targets."""

    scenario: str
    name: str
    value: float
    unit: str
    ceiling_name: str = ""
    ceiling: float | None = None
    targets: tuple[Target, ...] = field(default_factory=tuple)

    @property
    def ratio(self) -> float | None:
        if self.ceiling is None or self.ceiling <= 0:
            return None
        return self.value / self.ceiling

    @property
    def met(self) -> bool | None:
        """True when every target is met, False when one is not, None without targets."""
        verdicts = [target.met_by(self.value, self.ratio) for target in self.targets]
        if not verdicts or None in verdicts:
            return None
        return all(verdicts)


def verdict(met: bool | None) -> str:
    return {True: "met", False: "NOT met", None: "—"}[met]


def table(figures: Sequence[Figure]) -> str:
    """The figures as aligned plain-text rows, one scenario after another."""
    header = ("figure", "value", "unit", "raw ceiling", "ratio", "target", "met")
    rows = [header] + [_row(figure) for figure in figures]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    right_aligned = {1, 4}
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.rjust(width) if column in right_aligned else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _row(figure: Figure) -> tuple[str, str, str, str, str, str, str]:
    ceiling = ""
    if figure.ceiling is not None:
        ceiling = f"{figure.ceiling_name} {_number(figure.ceiling)}"
    ratio = "" if figure.ratio is None else f"{figure.ratio:.2f}"
    targets = "; ".join(target.describe(figure.unit) for target in figure.targets)
    return (
        f"{figure.scenario}: {figure.name}",
        _number(figure.value),
        figure.unit,
        ceiling,
        ratio,
        targets,
        verdict(figure.met) if figure.targets else "",
    )


def _number(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def document(figures: Sequence[Figure], settings: Mapping[str, Any]) -> dict[str, Any]:
    """What all.json holds: the figures, the sizes used and the machine they were measured on."""
    return {
        "commit": _commit(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count() or 0,
            "load_average": list(os.getloadavg()),
        },
        "settings": dict(settings),
        "figures": [
            {
                "scenario": figure.scenario,
                "name": figure.name,
                "value": _finite(figure.value),
                "unit": figure.unit,
                "ceiling_name": figure.ceiling_name,
                "ceiling": _finite(figure.ceiling),
                "ratio": _finite(figure.ratio),
                "targets": [target.describe(figure.unit) for target in figure.targets],
                "met": figure.met,
            }
            for figure in figures
        ],
    }


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: a figure that could not be measured is null."""
    return None if value is None or math.isnan(value) or math.isinf(value) else value


def save(content: Mapping[str, Any], directory: Path = RESULTS_DIR) -> tuple[Path, Path]:
    """all.json, and the same as `<commit>-<UTC time>.json` for comparing commits later."""
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(content, indent=2, ensure_ascii=False) + "\n"
    latest = directory / "all.json"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    kept = directory / f"{content['commit']}-{stamp}.json"
    latest.write_text(text)
    kept.write_text(text)
    return latest, kept


def _commit() -> str:
    """The short hash of HEAD, `+dirty` when the tree has changes; `unknown` outside git."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        changed = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}+dirty" if changed else head


def _git(*arguments: str) -> str:
    return subprocess.run(
        ["git", *arguments], cwd=_REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


def compare(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """Each figure of `after` beside the same figure of `before`, with the change in percent."""
    earlier = {(f["scenario"], f["name"]): f for f in before["figures"]}
    header = (f"{before['commit']} → {after['commit']}", "before", "after", "change")
    rows = [header]
    for figure in after["figures"]:
        old = earlier.pop((figure["scenario"], figure["name"]), None)
        rows.append(_compared(figure, old))
    rows += [(f"{f['scenario']}: {f['name']}", _value(f), "(gone)", "") for f in earlier.values()]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) if column == 0 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    )


def _compared(
    figure: Mapping[str, Any], old: Mapping[str, Any] | None
) -> tuple[str, str, str, str]:
    label = f"{figure['scenario']}: {figure['name']}"
    if old is None:
        return (label, "(new)", _value(figure), "")
    change = ""
    if old["value"] and figure["value"] is not None:
        change = f"{(figure['value'] - old['value']) / old['value']:+.1%}"
    return (label, _value(old), _value(figure), change)


def _value(figure: Mapping[str, Any]) -> str:
    value = figure["value"]
    return "n/a" if value is None else f"{_number(value)} {figure['unit']}"


def load(path: Path) -> dict[str, Any]:
    content: dict[str, Any] = json.loads(path.read_text())
    return content

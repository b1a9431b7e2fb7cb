"""The simulator's driver: the truth file, the scenarios in turn, the table, the JSON and plots.

The truth file is one JSON object with a `seed` and one section per scenario; a section left out
keeps the default planted in `truth.json` beside this file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.decisions import attribution, bandit, channels, churn, send_time
from bench.decisions.result import ScenarioResult

Scenario = Callable[[Mapping[str, Any], int], ScenarioResult]

DEFAULT_TRUTH = Path(__file__).with_name("truth.json")

SCENARIOS: Mapping[str, tuple[str, Scenario]] = {
    # scenario name: (its section of the truth file, its run function)
    "churn": ("purchases", churn.run),
    "send_time": ("send_time", send_time.run),
    "channels": ("channels", channels.run),
    "bandit": ("variants", bandit.run),
    "attribution": ("attribution", attribution.run),
}


def load_truth(path: Path | None) -> dict[str, Any]:
    """The default truth, with the sections (and seed) of `path` in place of its own."""
    truth: dict[str, Any] = json.loads(DEFAULT_TRUTH.read_text())
    if path is not None:
        given = json.loads(path.read_text())
        if not isinstance(given, dict):
            raise ValueError(f"{path}: a truth file is a JSON object")
        unknown = set(given) - {"seed", *(section for section, _ in SCENARIOS.values())}
        if unknown:
            raise ValueError(f"{path}: unknown sections {sorted(unknown)}")
        truth.update(given)
    return truth


def run_scenarios(
    truth: Mapping[str, Any], seed: int, chosen: Sequence[str]
) -> list[ScenarioResult]:
    """Each chosen scenario on its section of the truth, in the order given."""
    results = []
    for name in chosen:
        section, run = SCENARIOS[name]
        results.append(run(truth[section], seed))
    return results


def table(results: Sequence[ScenarioResult]) -> str:
    """One line per figure: scenario, figure, value, target and whether it was met."""
    rows = [("scenario", "figure", "value", "target", "met")]
    for result in results:
        for figure in result.figures:
            target = "" if figure.target is None else _target(figure.target, figure.at_least)
            met = {None: "", True: "yes", False: "NO"}[figure.passed]
            rows.append((result.name, figure.name, f"{figure.value:.4g}{figure.unit}", target, met))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def save(
    results: Sequence[ScenarioResult], truth: Mapping[str, Any], seed: int, out: Path
) -> list[Path]:
    """`decisions.json` with every figure and detail, and one PNG of curves per scenario."""
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "seed": seed,
        "truth": truth,
        "scenarios": {result.name: _as_json(result) for result in results},
    }
    figures_path = out / "decisions.json"
    figures_path.write_text(json.dumps(document, indent=2, default=float))
    return [figures_path, *(_plot(result, out) for result in results if result.curves)]


def _target(target: float, at_least: bool) -> str:
    return f"{'>=' if at_least else '<='} {target:.4g}"


def _as_json(result: ScenarioResult) -> dict[str, Any]:
    return {
        "figures": [
            {
                "name": f.name,
                "value": f.value,
                "target": f.target,
                "at_least": f.at_least,
                "passed": f.passed,
            }
            for f in result.figures
        ],
        "curves": {curve.label: curve.values for curve in result.curves},
        "details": result.details,
    }


def _plot(result: ScenarioResult, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 4))
    for curve in result.curves:
        axes.plot(range(1, len(curve.values) + 1), curve.values, label=curve.label)
    axes.set_title(result.name)
    axes.set_xlabel(result.x_label)
    axes.set_ylabel(result.y_label)
    axes.legend()
    figure.tight_layout()
    path = out / f"{result.name}.png"
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path

"""`python -m bench loop-compare --before REV [--after DIR|REV] [--rounds N]`: one scenario for
two trees in turn on one machine, and each figure's min and median per side with the ratio.

Runs on one machine drift with what else it does (other work, its caches, the CPU's clock), so
one run of each tree measures the machine as much as the change. Here the runs alternate,
before, after, before, after, …, `--rounds` of each, every one in a fresh scratch stack; a
change shows when the two sides' values do not overlap.

Each side is a tree: `--before` a git revision, checked out with `git worktree` into a temp dir
(removed afterwards); `--after` this tree by default, or another directory, or a revision
checked out the same way. Each run is `python -m bench SCENARIO` as a subprocess of this
interpreter (the same virtualenv) with the tree as its working directory and on PYTHONPATH, so
the services and libraries it starts are the tree's own. The harness is not: a checked-out
revision gets this tree's bench/ in place of its own (`--own-harness` keeps its own), so both
sides are measured by the same code. The loop runs with `--quick` (20 s of warm-up, 15 s per
rate) unless `--full`.

Each run's output goes to a log beside the results; the comparison is printed and kept as
bench/results/<scenario>-compare.json and a copy named by the time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.report import RESULTS_DIR
from bench.summary import _number

_REPO = Path(__file__).resolve().parents[1]
_HARNESS_SKIPS = shutil.ignore_patterns("results", "__pycache__")


@dataclass(frozen=True)
class Side:
    """A tree the scenario runs in: its label (revision or directory) and where it is."""

    label: str
    path: Path


@dataclass(frozen=True)
class Compared:
    """One figure's values over the rounds, before and after."""

    figure: str
    unit: str
    before: tuple[float, ...]
    after: tuple[float, ...]
    targets: str = ""

    @property
    def before_min(self) -> float | None:
        return min(self.before) if self.before else None

    @property
    def before_median(self) -> float | None:
        return statistics.median(self.before) if self.before else None

    @property
    def after_min(self) -> float | None:
        return min(self.after) if self.after else None

    @property
    def after_median(self) -> float | None:
        return statistics.median(self.after) if self.after else None

    @property
    def ratio(self) -> float | None:
        """The after median over the before median; None when either is missing or zero."""
        before, after = self.before_median, self.after_median
        if before is None or after is None or before == 0:
            return None
        return after / before


def compared(
    before: Sequence[Sequence[Mapping[str, Any]]], after: Sequence[Sequence[Mapping[str, Any]]]
) -> list[Compared]:
    """Each figure of the runs (all.json's `figures`, one list per run) with its values on each
    side; in the order the after runs name them, then those only before runs have. A figure a
    run could not measure (null) is left out of that side's values."""
    order: dict[str, tuple[str, str]] = {}
    values: dict[str, dict[str, list[float]]] = {}
    for side, runs in (("after", after), ("before", before)):
        for run in runs:
            for figure in run:
                key = f"{figure['scenario']}: {figure['name']}"
                targets = "; ".join(figure.get("targets") or ())
                if not order.get(key, ("", ""))[1]:  # the first run that names its targets
                    order[key] = (figure["unit"], targets)
                sides = values.setdefault(key, {"before": [], "after": []})
                if figure.get("value") is not None:
                    sides[side].append(float(figure["value"]))
    return [
        Compared(key, unit, tuple(values[key]["before"]), tuple(values[key]["after"]), targets)
        for key, (unit, targets) in order.items()
    ]


def table(rows: Sequence[Compared], before: str, after: str) -> str:
    """The comparison as aligned plain text: min and median per side, after/before, target."""
    header = (
        "figure",
        "unit",
        f"{before} min",
        f"{before} median",
        f"{after} min",
        f"{after} median",
        "after/before",
        "target",
    )
    lines = [header]
    for row in rows:
        lines.append(
            (
                row.figure,
                row.unit,
                _cell(row.before_min),
                _cell(row.before_median),
                _cell(row.after_min),
                _cell(row.after_median),
                "" if row.ratio is None else f"{row.ratio:.3f}",
                row.targets,
            )
        )
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    text = [
        "  ".join(
            cell.ljust(width) if column in (0, 1, 7) else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    ]
    text.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(text)


def _cell(value: float | None) -> str:
    return "n/a" if value is None else _number(value)


def main(arguments: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench loop-compare", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--before", required=True, help="a git revision")
    parser.add_argument(
        "--after", help="a directory or a git revision (default: this tree, as it is)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="runs of each (default 2)")
    parser.add_argument("--scenario", default="loop", help="what to run (default loop)")
    parser.add_argument("--full", action="store_true", help="the loop without --quick")
    parser.add_argument(
        "--own-harness",
        action="store_true",
        help="run a checked-out revision's own bench/, not this tree's",
    )
    parsed = parser.parse_args(arguments)
    extra = [] if parsed.full or parsed.scenario != "loop" else ["--quick"]
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    work = RESULTS_DIR / f"{parsed.scenario}-compare-{stamp}"
    harness = None if parsed.own_harness else _REPO / "bench"
    with contextlib.ExitStack() as trees:
        before = trees.enter_context(_checked_out(parsed.before, harness))
        after = _after(parsed.after, harness, trees)
        runs: dict[str, list[list[dict[str, Any]]]] = {"before": [], "after": []}
        failed: list[str] = []
        for round_ in range(1, parsed.rounds + 1):
            for name, side in (("before", before), ("after", after)):
                folder = work / f"{name}-{round_}"
                where = f"[{name} {round_}/{parsed.rounds}]"
                print(f"{where} {side.label}: running", flush=True)
                started = time.monotonic()
                try:
                    figures = _run(side, parsed.scenario, extra, folder)
                except RuntimeError as error:  # the other runs still tell something
                    print(f"{where} failed: {error}", file=sys.stderr, flush=True)
                    failed.append(f"{name} {round_}")
                    continue
                runs[name].append(figures)
                seconds = time.monotonic() - started
                print(f"{where} {seconds:.0f} s: {_headline(figures)}", flush=True)
    rows = compared(runs["before"], runs["after"])
    print(f"\n{parsed.scenario}: {before.label} → {after.label}, {parsed.rounds} rounds each\n")
    print(table(rows, "before", "after"))
    document = {
        "scenario": parsed.scenario,
        "time": stamp,
        "before": before.label,
        "after": after.label,
        "rounds": parsed.rounds,
        "failed_runs": failed,
        "arguments": extra,
        "load_average": list(os.getloadavg()),
        "figures": [
            {
                **asdict(row),
                "before_min": row.before_min,
                "before_median": row.before_median,
                "after_min": row.after_min,
                "after_median": row.after_median,
                "ratio": row.ratio,
            }
            for row in rows
        ],
    }
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    work.mkdir(parents=True, exist_ok=True)
    latest = RESULTS_DIR / f"{parsed.scenario}-compare.json"
    latest.write_text(text)
    (work / "compare.json").write_text(text)
    print(f"\nresults: {latest} and {work / 'compare.json'} (each run's log beside it)")
    if failed:
        print(f"failed runs: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _after(value: str | None, harness: Path | None, trees: contextlib.ExitStack) -> Side:
    if value is None:
        return Side(f"{_short(_REPO, 'HEAD')}+tree", _REPO)
    if Path(value).is_dir():
        path = Path(value).resolve()
        return Side(str(path), path)
    return trees.enter_context(_checked_out(value, harness))


@contextlib.contextmanager
def _checked_out(revision: str, harness: Path | None) -> Iterator[Side]:
    """The revision in a git worktree of its own in a temp dir, this tree's bench/ in it
    unless `harness` is None; removed afterwards."""
    label = _short(_REPO, revision)
    folder = Path(tempfile.mkdtemp(prefix="closeloop-bench-tree-"))
    path = folder / label
    _git(_REPO, "worktree", "add", "--detach", "--quiet", str(path), revision)
    try:
        if harness is not None:
            shutil.rmtree(path / "bench")
            shutil.copytree(harness, path / "bench", ignore=_HARNESS_SKIPS)
        yield Side(label, path)
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _git(_REPO, "worktree", "remove", "--force", str(path))
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(subprocess.CalledProcessError):
            _git(_REPO, "worktree", "prune")


def _run(side: Side, scenario: str, extra: list[str], folder: Path) -> list[dict[str, Any]]:
    """`python -m bench SCENARIO` in the tree; the figures of its all.json."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(side.path), "BENCH_RESULTS_DIR": str(folder)}
    _check_imports(side, env)
    log = folder / "output.log"
    with log.open("wb") as output:
        code = subprocess.run(
            [sys.executable, "-m", "bench", scenario, *extra],
            cwd=side.path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            check=False,
        ).returncode
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{side.label}: python -m bench {scenario} exited {code}:\n{tail}")
    # A revision's own harness may not know BENCH_RESULTS_DIR: then it wrote into its tree.
    for results in (folder / "all.json", side.path / "bench" / "results" / "all.json"):
        if results.exists():
            figures: list[dict[str, Any]] = json.loads(results.read_text())["figures"]
            return figures
    raise RuntimeError(f"{side.label}: no all.json after the run (log: {log})")


def _check_imports(side: Side, env: Mapping[str, str]) -> None:
    """The services and libraries the run imports must be the tree's own, not this one's."""
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "import libs, services, bench; print(libs.__file__, services.__file__, bench.__file__)",
        ],
        cwd=side.path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    outside = [
        path for path in found if not Path(path).resolve().is_relative_to(side.path.resolve())
    ]
    if outside:
        raise RuntimeError(f"{side.label}: the run would import {outside}, outside its tree")


def _headline(figures: Sequence[Mapping[str, Any]]) -> str:
    """A few figures of a run, to follow the comparison as it goes."""
    wanted = ("latency p99", "CPU, whole machine", "events decoded, six consumers")
    shown = [
        f"{figure['scenario']} {figure['name']} {_cell(figure['value'])} {figure['unit']}"
        for figure in figures
        if figure["name"] in wanted
    ]
    return "; ".join(shown) or f"{len(figures)} figures"


def _short(repo: Path, revision: str) -> str:
    return _git(repo, "rev-parse", "--short", revision)


def _git(repo: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", *arguments], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()

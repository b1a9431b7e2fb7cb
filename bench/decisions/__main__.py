"""`python -m bench decisions`: run every scenario of the simulator on a truth file, print one
table, write the figures as JSON and draw one plot per scenario (PNG)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench.decisions.simulator import SCENARIOS, load_truth, run_scenarios, save, table

DEFAULT_OUT = Path("bench/results/decisions")


def main(arguments: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench decisions", description=__doc__)
    parser.add_argument(
        "--truth", type=Path, help="a truth file; sections it leaves out keep their defaults"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=None, help="default: the truth file's seed")
    parser.add_argument(
        "scenarios", nargs="*", help=f"any of {', '.join(SCENARIOS)} (default: all)"
    )
    parsed = parser.parse_args(arguments)
    unknown = [name for name in parsed.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
    truth = load_truth(parsed.truth)
    seed = parsed.seed if parsed.seed is not None else int(truth["seed"])
    started = time.monotonic()
    results = run_scenarios(truth, seed, parsed.scenarios or list(SCENARIOS))
    print(table(results))
    written = save(results, truth, seed, parsed.out)
    print(f"\nwritten: {', '.join(str(path) for path in written)}")
    print(f"({time.monotonic() - started:.0f} s in all)")
    missed = [f"{r.name}: {f.name}" for r in results for f in r.figures if f.passed is False]
    if missed:
        print(f"targets missed: {'; '.join(missed)}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

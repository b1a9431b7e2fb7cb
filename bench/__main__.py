"""`python -m bench [SCENARIO|all]`: one broker and database, the chosen scenarios in turn, and
at the end one table of every figure against the raw ceilings measured in the same run.

`python -m bench compare BEFORE.json AFTER.json` prints each figure's change between two runs.
`python -m bench decisions` runs the decision-quality simulator instead (no stack; see
bench/decisions).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bench import bus, dispatch, ingest, journey, loop, profile, segment, segment_realtime, summary
from bench.progress import PROGRESS
from bench.raw import Ceilings
from bench.report import Rate
from libs.devstack.scratch import scratch_stack

Run = Callable[[str, str, str, int], Awaitable[list[Rate]]]
Size = Literal["events", "profiles", "timers"]

# The defaults keep `make bench` near 20 minutes on the 2-core development machine.
DEFAULT_SIZES: Mapping[Size, int] = {"events": 50_000, "profiles": 1_000_000, "timers": 100_000}


@dataclass(frozen=True)
class Scenario:
    """A benchmark module's three functions, and which size parameter is its `count`."""

    run: Run
    report: Callable[[list[Rate]], None]
    figures: Callable[[list[Rate], Ceilings], list[summary.Figure]]
    size: Size = "events"


SCENARIOS: Mapping[str, Scenario] = {
    # The bus comes first: its raw ceilings are the whole run's.
    "bus": Scenario(bus.run, bus.report, bus.figures),
    "ingest": Scenario(ingest.run, ingest.report, ingest.figures),
    "profile": Scenario(profile.run, profile.report, profile.figures),
    "segment-realtime": Scenario(
        segment_realtime.run, segment_realtime.report, segment_realtime.figures
    ),
    "segment": Scenario(segment.run, segment.report, segment.figures, "profiles"),
    "journey": Scenario(journey.run, journey.report, journey.figures, "timers"),
    "dispatch": Scenario(dispatch.run, dispatch.report, dispatch.figures),
    "loop": Scenario(loop.run, loop.report, loop.figures),
}


async def main(chosen: list[str], sizes: Mapping[Size, int]) -> int:
    """Run each chosen scenario in turn; one that fails is reported and the others still run."""
    results: dict[str, list[Rate]] = {}
    failed: list[str] = []
    async with scratch_stack("closeloop-bench-") as (broker, db):
        print(
            f"embedded broker {broker.bootstrap}, PostgreSQL {db.dsn}; sizes {dict(sizes)}; "
            f"{os.cpu_count()} CPUs shared by the broker, PostgreSQL, the services and the "
            f"load generator (load average {_load()})"
        )
        for number, name in enumerate(chosen, start=1):
            scenario = SCENARIOS[name]
            async with PROGRESS.step(f"[{number}/{len(chosen)}] {name}"):
                try:
                    rates = await scenario.run(
                        broker.bootstrap, db.url, db.dsn, sizes[scenario.size]
                    )
                except Exception:
                    traceback.print_exc()
                    failed.append(name)
                    continue
            scenario.report(rates)
            results[name] = rates
        if "bus" in results:
            ceilings = bus.ceilings_of(results["bus"])
        else:
            async with PROGRESS.step("raw ceilings"):
                ceilings = await bus.ceilings(broker.bootstrap, db.dsn, sizes["events"])
    _summarise(results, ceilings, sizes)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _summarise(
    results: Mapping[str, list[Rate]], ceilings: Ceilings, sizes: Mapping[Size, int]
) -> None:
    figures = [
        figure
        for name, rates in results.items()
        for figure in SCENARIOS[name].figures(rates, ceilings)
    ]
    print(f"\nAll figures (load average now {_load()})\n")
    print(summary.table(figures))
    latest, kept = summary.save(
        summary.document(figures, {"sizes": dict(sizes), "scenarios": list(results)})
    )
    print(f"\nresults: {latest} and {kept}")


def _load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def _compare(arguments: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench compare")
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    paths = parser.parse_args(arguments)
    print(summary.compare(summary.load(paths.before), summary.load(paths.after)))
    return 0


def _bench(arguments: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "scenario", nargs="?", default="all", choices=[*SCENARIOS, "all"], help="default: all"
    )
    parser.add_argument(
        "--events",
        type=int,
        default=DEFAULT_SIZES["events"],
        help="events per measurement (default %(default)s)",
    )
    parser.add_argument(
        "--profiles",
        type=int,
        default=DEFAULT_SIZES["profiles"],
        help="profiles for the bulk segment evaluation (default %(default)s)",
    )
    parser.add_argument(
        "--timers",
        type=int,
        default=DEFAULT_SIZES["timers"],
        help="due waits for the journey timers (default %(default)s)",
    )
    parsed = parser.parse_args(arguments)
    chosen = list(SCENARIOS) if parsed.scenario == "all" else [parsed.scenario]
    sizes: dict[Size, int] = {
        "events": parsed.events,
        "profiles": parsed.profiles,
        "timers": parsed.timers,
    }
    started = time.monotonic()
    code = asyncio.run(main(chosen, sizes))
    print(f"({time.monotonic() - started:.0f} s in all)")
    return code


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments[:1] == ["compare"]:
        sys.exit(_compare(arguments[1:]))
    if arguments[:1] == ["decisions"]:
        from bench.decisions.__main__ import main as decisions

        sys.exit(decisions(arguments[1:]))
    sys.exit(_bench(arguments))

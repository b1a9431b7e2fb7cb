"""`python -m bench [SCENARIO|all]`: one broker and database, the chosen scenarios in turn, and
at the end one table of every figure against the raw ceilings measured in the same run.

`python -m bench compare BEFORE.json AFTER.json` prints each figure's change between two runs.
`python -m bench loop-compare --before REV [--after DIR|REV] [--rounds N]` runs the loop for two
trees alternately on this machine and prints each figure's min and median per side with the
ratio (bench/alternate.py). `python -m bench loop --quick` keeps the loop's warm-up and phases
short (20 s and 15 s per rate).
`python -m bench decisions` runs the decision-quality simulator instead (no stack; see
bench/decisions). `python -m bench broadcast [--profiles N]` sends a broadcast to a million
profiles (N) through journey, content and dispatch; `all` leaves it out.
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

from bench import (
    broadcast,
    bulk_import,
    bus,
    dispatch,
    dryrun,
    ingest,
    journey,
    loop,
    profile,
    segment,
    segment_realtime,
    summary,
)
from bench.progress import PROGRESS
from bench.raw import Ceilings
from bench.report import Rate
from libs.devstack.scratch import scratch_stack

Run = Callable[[str, str, str, int], Awaitable[list[Rate]]]
Size = Literal["events", "profiles", "timers", "customers", "dry_run_profiles"]

# The defaults keep `make bench` near 20 minutes on the 2-core development machine.
DEFAULT_SIZES: Mapping[Size, int] = {
    "events": 50_000,
    "profiles": 1_000_000,
    "timers": 100_000,
    "customers": bulk_import.count_from_env(),
    "dry_run_profiles": 100_000,
}


@dataclass(frozen=True)
class Scenario:
    """A benchmark module's three functions, and which size parameter is its `count`.

    One that starts a broker and database of its own (`own_stack`) ignores the run's and is not
    compared with the raw ceilings: run alone, or with others like it, neither is started. One
    that is not `in_all` runs only when named (it alone takes longer than the combined run).
    """

    run: Run
    report: Callable[[list[Rate]], None]
    figures: Callable[[list[Rate], Ceilings], list[summary.Figure]]
    size: Size = "events"
    own_stack: bool = False
    in_all: bool = True


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
    "dryrun": Scenario(dryrun.run, dryrun.report, dryrun.figures, "dry_run_profiles"),
    "import": Scenario(
        bulk_import.run, bulk_import.report, bulk_import.figures, "customers", own_stack=True
    ),
    "loop": Scenario(loop.run, loop.report, loop.figures, own_stack=True),
    "broadcast": Scenario(
        broadcast.run,
        broadcast.report,
        broadcast.figures,
        "profiles",
        own_stack=True,
        in_all=False,
    ),
}


async def main(chosen: list[str], sizes: Mapping[Size, int]) -> int:
    """Run each chosen scenario in turn; one that fails is reported and the others still run."""
    if all(SCENARIOS[name].own_stack for name in chosen):
        print(f"sizes {dict(sizes)}; {_machine()}")
        results, failed = await _each(chosen, sizes, ("", "", ""))
        ceilings = Ceilings.not_measured()
    else:
        async with scratch_stack("closeloop-bench-") as (broker, db):
            print(
                f"embedded broker {broker.bootstrap}, PostgreSQL {db.dsn}; sizes {dict(sizes)}; "
                f"{_machine()}"
            )
            results, failed = await _each(chosen, sizes, (broker.bootstrap, db.url, db.dsn))
            if "bus" in results:
                ceilings = bus.ceilings_of(results["bus"])
            else:
                async with PROGRESS.step("raw ceilings"):
                    ceilings = await bus.ceilings(broker.bootstrap, db.dsn, sizes["events"])
    _summarise(results, ceilings, sizes)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


async def _each(
    chosen: list[str], sizes: Mapping[Size, int], stack: tuple[str, str, str]
) -> tuple[dict[str, list[Rate]], list[str]]:
    """Each scenario on the run's stack (bootstrap, database URL, DSN): the rates of those that
    ran, and the names of those that failed."""
    results: dict[str, list[Rate]] = {}
    failed: list[str] = []
    for number, name in enumerate(chosen, start=1):
        scenario = SCENARIOS[name]
        async with PROGRESS.step(f"[{number}/{len(chosen)}] {name}"):
            try:
                rates = await scenario.run(*stack, sizes[scenario.size])
            except Exception:
                traceback.print_exc()
                failed.append(name)
                continue
        scenario.report(rates)
        results[name] = rates
    return results, failed


def _machine() -> str:
    return (
        f"{os.cpu_count()} CPUs shared by the broker, PostgreSQL, the services and the "
        f"load generator (load average {_load()})"
    )


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
        help="profiles for the bulk segment evaluation and the broadcast (default %(default)s)",
    )
    parser.add_argument(
        "--timers",
        type=int,
        default=DEFAULT_SIZES["timers"],
        help="due waits for the journey timers (default %(default)s)",
    )
    parser.add_argument(
        "--dry-run-profiles",
        type=int,
        default=DEFAULT_SIZES["dry_run_profiles"],
        help="profiles the journey dry run replays (default %(default)s)",
    )
    parser.add_argument(
        "--import-count",
        type=int,
        default=DEFAULT_SIZES["customers"],
        help="new customers in the bulk import's CSV (default IMPORT_COUNT or %(default)s)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=(
            f"the loop's warm-up {loop.QUICK_WARM_UP_SECONDS:.0f} s and each rate's phase "
            f"{loop.QUICK_SECONDS:.0f} s (LOOP_WARM_UP_SECONDS and LOOP_SECONDS win)"
        ),
    )
    parsed = parser.parse_args(arguments)
    if parsed.quick:
        loop.quick()
    if parsed.scenario == "all":
        chosen = [name for name, scenario in SCENARIOS.items() if scenario.in_all]
    else:
        chosen = [parsed.scenario]
    sizes: dict[Size, int] = {
        "events": parsed.events,
        "profiles": parsed.profiles,
        "timers": parsed.timers,
        "customers": parsed.import_count,
        "dry_run_profiles": parsed.dry_run_profiles,
    }
    started = time.monotonic()
    code = asyncio.run(main(chosen, sizes))
    print(f"({time.monotonic() - started:.0f} s in all)")
    return code


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments[:1] == ["compare"]:
        sys.exit(_compare(arguments[1:]))
    if arguments[:1] == ["loop-compare"]:
        from bench import alternate

        sys.exit(alternate.main(arguments[1:]))
    if arguments[:1] == ["decisions"]:
        from bench.decisions.__main__ import main as decisions

        sys.exit(decisions(arguments[1:]))
    sys.exit(_bench(arguments))

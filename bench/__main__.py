"""`python -m bench [SCENARIO|all]`: one broker and database, the chosen scenarios in turn."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping

from bench import bus, dispatch, ingest, loop, profile, segment
from bench.report import Rate, print_table, save
from libs.devstack.scratch import scratch_stack

Run = Callable[[str, str, str, int], Awaitable[list[Rate]]]
Report = Callable[[list[Rate]], None]


def _segment_report(rates: list[Rate]) -> None:
    """bench/segment.py prints only from its own `__main__`: the same table, and the JSON."""
    print_table("Segment bulk evaluation", rates, [])
    print(f"results: {save('segment', rates, [])}")


SCENARIOS: Mapping[str, tuple[Run, Report]] = {
    "bus": (bus.run, bus.report),
    "ingest": (ingest.run, ingest.report),
    "profile": (profile.run, profile.report),
    "segment": (segment.run, _segment_report),
    "dispatch": (dispatch.run, dispatch.report),
    "loop": (loop.run, loop.report),
}


async def main(chosen: list[str], events: int) -> int:
    """Run each chosen scenario in turn; one that fails is reported and the others still run."""
    failed: list[str] = []
    async with scratch_stack("closeloop-bench-") as (broker, db):
        print(
            f"embedded broker {broker.bootstrap}, PostgreSQL {db.dsn}; {events} events; "
            f"{os.cpu_count()} CPUs shared by the broker, PostgreSQL, the services and the "
            "load generator"
        )
        for name in chosen:
            run, report = SCENARIOS[name]
            started = time.perf_counter()
            try:
                rates = await run(broker.bootstrap, db.url, db.dsn, events)
            except Exception:
                traceback.print_exc()
                failed.append(name)
                continue
            report(rates)
            print(f"({name}: {time.perf_counter() - started:.0f} s in all)")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "scenario", nargs="?", default="all", choices=[*SCENARIOS, "all"], help="default: all"
    )
    parser.add_argument("--events", type=int, default=100_000, help="events per measurement")
    arguments = parser.parse_args()
    scenarios = list(SCENARIOS) if arguments.scenario == "all" else [arguments.scenario]
    sys.exit(asyncio.run(main(scenarios, arguments.events)))

"""`python -m bench`: start the embedded broker and database, run the benchmarks, print them."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from bench import bus
from libs.devstack.broker import EmbeddedBroker
from libs.devstack.postgres import EmbeddedPostgres


async def main(events: int) -> None:
    with tempfile.TemporaryDirectory(prefix="closeloop-bench-") as workdir:
        root = Path(workdir)
        async with EmbeddedBroker(log_dir=root) as broker, EmbeddedPostgres(root / "pgdata") as db:
            print(f"embedded broker {broker.bootstrap}, PostgreSQL {db.dsn}; {events} events")
            rates = await bus.run(broker.bootstrap, db.url, db.dsn, events)
            bus.report(rates)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000, help="events per measurement")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.events))

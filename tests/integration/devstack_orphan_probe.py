"""Started by test_devstack as a process of its own: starts the embedded broker and PostgreSQL,
prints their pids as a JSON list, and waits to be killed without stopping them."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from libs.devstack.broker import EmbeddedBroker
from libs.devstack.postgres import EmbeddedPostgres


async def main(directory: Path) -> None:
    broker = EmbeddedBroker(directory)
    await broker.start()
    database = EmbeddedPostgres(directory / "pgdata", fast=True)
    await database.start()
    print(json.dumps([process.pid for process in (broker._proc, database._proc) if process]))
    sys.stdout.flush()
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))

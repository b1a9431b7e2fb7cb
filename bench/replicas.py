"""A service run as N processes of one deployment (replicas), for the throughput scenarios."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from sqlalchemy import text

from libs.common.db import create_engine
from libs.common.settings import Settings
from libs.devstack import ServiceProcess, free_port


@asynccontextmanager
async def replicas(
    name: str, module: str, env: Mapping[str, str], processes: int
) -> AsyncIterator[list[ServiceProcess]]:
    """`processes` unstarted processes of the service `module`, named `name` (one schema, one
    consumer group), each on its own port. On the way out they are stopped, their schema is
    dropped and their logs removed."""
    logs = Path(tempfile.mkdtemp(prefix=f"closeloop-bench-{name}-"))
    services = [
        ServiceProcess(name, module, env, free_port(), log_dir=logs / f"p{i}")
        for i in range(processes)
    ]
    try:
        yield services
    finally:
        async with AsyncExitStack() as stopping:
            for process in services:
                stopping.push_async_callback(process.stop)
        await _drop_schema(name, env["CLOSELOOP_DATABASE_URL"])
        shutil.rmtree(logs, ignore_errors=True)


async def _drop_schema(name: str, database_url: str) -> None:
    settings = Settings(service_name=name, database_url=database_url)
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP SCHEMA IF EXISTS {settings.schema_name} CASCADE"))
    finally:
        await engine.dispose()

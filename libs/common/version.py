"""The running code's version, for `GET /` and the logs: the `pyproject.toml` beside the source
where it runs as files (a checkout, the container image), else the installed package's."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

# libs/common/version.py -> the folder holding libs/, services/ and, in a checkout or the
# image, pyproject.toml. Stdlib only: readable before any dependency is installed.
_PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
UNKNOWN = "unknown"


def version() -> str:
    """`project.version` of the source's pyproject.toml, the installed `closeloop` package's
    version when there is no such file (a wheel install), or `unknown`."""
    return _source_version(_PYPROJECT) or _installed_version() or UNKNOWN


def _source_version(pyproject: Path) -> str | None:
    try:
        with pyproject.open("rb") as file:
            project = tomllib.load(file).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return None
    found = project.get("version") if project.get("name") == "closeloop" else None
    return found if isinstance(found, str) else None


def _installed_version() -> str | None:
    try:
        return importlib.metadata.version("closeloop")
    except importlib.metadata.PackageNotFoundError:
        return None

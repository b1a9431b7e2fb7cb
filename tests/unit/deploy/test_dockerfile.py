"""The Dockerfile's shape: multi-stage, non-root, no build tools at run time, any service."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.unit.deploy.deploy_files import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
ENTRYPOINT = REPO_ROOT / "deploy" / "docker" / "entrypoint.sh"
_BUILD_TOOLS = ("build-essential", "gcc", "g++", "make", "libpq-dev")


def _stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined), split per FROM."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(stripped)
    return stages


def test_image_is_multi_stage_on_slim_python_311() -> None:
    stages = _stages()
    assert len(stages) >= 2
    arg = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert arg is not None and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", arg.group(1))
    assert all(stage[0].startswith("FROM ${PYTHON_IMAGE}") for stage in stages)


def test_final_stage_runs_as_non_root_without_build_tools() -> None:
    final = _stages()[-1]
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users, "the final stage sets no USER"
    assert users[-1].split(":")[0] not in {"0", "root"}
    installs = " ".join(line for line in final if line.upper().startswith("RUN "))
    assert not [tool for tool in _BUILD_TOOLS if tool in installs.split()]
    copies = [line for line in final if line.upper().startswith("COPY ")]
    assert all("--from=builder" in line for line in copies), "the final stage builds nothing"


def test_dependencies_install_into_a_venv_copied_to_the_final_stage() -> None:
    builder, final = _stages()[0], _stages()[-1]
    assert any("pyproject.toml" in line for line in builder)
    assert any("/opt/venv/bin/pip install" in line for line in builder)
    assert "COPY --from=builder /opt/venv /opt/venv" in final


def test_entrypoint_runs_any_service_by_name() -> None:
    final = _stages()[-1]
    entrypoints = [line for line in final if line.upper().startswith("ENTRYPOINT ")]
    assert json.loads(entrypoints[-1].split(" ", 1)[1]) == ["/app/entrypoint.sh"]
    script = ENTRYPOINT.read_text()
    assert 'exec python -m "services.$service" "$@"' in script


def test_entrypoint_passes_migrate_and_other_commands_through(tmp_path: Path) -> None:
    app = tmp_path / "app"
    (app / "services" / "journey").mkdir(parents=True)
    (app / "services" / "journey" / "__main__.py").touch()
    runner = tmp_path / "entrypoint.sh"
    runner.write_text(ENTRYPOINT.read_text().replace("/app/", f"{app}/"))
    # A `python` that prints its command line: the test sees what the image would run.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text('#!/bin/sh\necho "python $*"\n')
    (bin_dir / "python").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", str(runner), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
            env=env,
        )

    assert run("journey", "migrate").stdout.strip() == "python -m services.journey migrate"
    assert run("journey").stdout.strip() == "python -m services.journey"
    assert run("echo", "replay").stdout.strip() == "replay"
    usage = run()
    assert usage.returncode == 2 and "journey" in usage.stderr


def test_dockerignore_keeps_the_context_to_what_the_image_copies() -> None:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert lines[lines.index("*")] == "*", "everything is ignored unless listed"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {
        match.rstrip("/")
        for match in re.findall(r"^COPY (?!--from)(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    }
    assert copied <= allowed


def test_the_image_reports_the_version_of_its_source(tmp_path: Path) -> None:
    """The image copies the source as files and installs no `closeloop` package: `GET /` must
    still know the version. The image's /app is laid out here as its COPY lines say, and read
    by a Python without site-packages, so no installed package can answer instead."""
    app = tmp_path / "app"
    for source, target in re.findall(
        r"^COPY (?!--from)(\S+) /app/(\S*)$", DOCKERFILE.read_text(), re.MULTILINE
    ):
        destination = app / target
        if (REPO_ROOT / source).is_dir():
            shutil.copytree(REPO_ROOT / source, destination, dirs_exist_ok=True)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO_ROOT / source, destination)
    reported = subprocess.run(
        [sys.executable, "-S", "-c", "from libs.common.version import version; print(version())"],
        cwd=app,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    with (REPO_ROOT / "pyproject.toml").open("rb") as file:
        assert reported == tomllib.load(file)["project"]["version"]

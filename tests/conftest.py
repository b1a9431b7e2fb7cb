"""Fixtures every test can use: the embedded stack, settings pointed at it, service processes.

`make test` runs the suite on two workers (pytest-xdist), each with its own embedded stack.
Tests are handed out a package at a time under tests/integration/<package>/ (several of them
share one set of service processes per package) and a module at a time elsewhere, so no
package or module fixture is started twice.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest_plugins = ["libs.devstack.pytest_plugin"]

_INTEGRATION = "tests/integration/"


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    scheduler = LoadScopeScheduling(config, log)
    scheduler._split_scope = work_unit_of  # its one point of variation: what goes together
    return scheduler


def work_unit_of(nodeid: str) -> str:
    """The package of a test under tests/integration/<package>/, else its module."""
    module = nodeid.split("::", 1)[0]
    if module.startswith(_INTEGRATION) and "/" in module.removeprefix(_INTEGRATION):
        return module.rsplit("/", 1)[0]
    return module

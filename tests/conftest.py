"""Fixtures every test can use: the embedded stack, settings pointed at it, service processes."""

pytest_plugins = ["libs.devstack.pytest_plugin"]

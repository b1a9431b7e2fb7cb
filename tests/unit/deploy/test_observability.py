"""Dashboards and alert rules: well-formed, on metrics the platform exports, runbooks linked."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from libs.common import metrics
from tests.unit.deploy.deploy_files import (
    ALERT_RULES,
    DEPLOY,
    METRIC_OWNERS,
    REPO_ROOT,
    alert_rules,
    base_metric,
    dashboards,
    metric_names,
    panel_queries,
    used_metric_names,
)

OPERATIONS = REPO_ROOT / "docs" / "operations.md"


def _shared_metric_names() -> set[str]:
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                # A counter's family is named without the `_total` its series carry.
                suffix = "_total" if family.type == "counter" else ""
                names.add(family.name + suffix)
    return names


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors: headings lower-cased, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", markdown, re.MULTILINE)
    return {re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_metric_names_are_read_from_promql_not_from_label_values() -> None:
    expr = 'sum(rate(closeloop_x_total{topic="closeloop_y"}[5m])) / up{job="a"}'
    assert metric_names(expr) == {"closeloop_x_total", "up"}


def test_dashboards_are_provisioned_with_unique_uids_and_the_datasource() -> None:
    loaded = dashboards()
    assert {"closeloop-loop.json", "closeloop-services.json", "closeloop-bus-health.json"} <= set(
        loaded
    )
    assert len({dashboard["uid"] for dashboard in loaded.values()}) == len(loaded)
    datasources = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    uids = {datasource["uid"] for datasource in datasources}
    for dashboard in loaded.values():
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] in uids
            assert panel["targets"], f"{panel['title']} queries nothing"


def test_every_metric_a_panel_or_rule_reads_is_exported_by_the_platform() -> None:
    known = _shared_metric_names() | set(METRIC_OWNERS) | {"up"}
    unknown = {
        name: places
        for name, places in used_metric_names().items()
        if base_metric(name) not in known and name not in known
    }
    assert unknown == {}


def test_the_loop_dashboard_follows_the_loop_by_event_type() -> None:
    queries = " ".join(expr for _, expr in panel_queries(dashboards()["closeloop-loop.json"]))
    for event_type in ("segment.entered", "message.requested", "message.clicked"):
        assert event_type in queries
    assert "conversion.attributed" in queries
    assert "closeloop_loop_latency_seconds_bucket" in queries


def test_every_alert_has_a_runbook_section_in_operations_doc() -> None:
    anchors = _anchors(OPERATIONS.read_text())
    for rule in alert_rules():
        url = rule["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path == "docs/operations.md", rule["alert"]
        assert anchor in anchors, f"{rule['alert']}: no section #{anchor} in docs/operations.md"
        assert rule["annotations"]["summary"]


def test_promtool_accepts_the_alert_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: apt-get install prometheus (the Debian package)")
    result = subprocess.run(
        [promtool, "check", "rules", str(ALERT_RULES)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout

"""Dashboards and alert rules: well-formed, on metrics the platform exports, runbooks linked."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from libs.common import metrics
from tests.unit.deploy.deploy_files import (
    ALERT_RULES,
    DEPLOY,
    EXPORTER_METRICS,
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
DATASOURCE = "${datasource}"
REQUESTS = "closeloop_http_requests_total"


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


def _panel(file: str, title: str) -> dict[str, Any]:
    panels: list[dict[str, Any]] = dashboards()[file]["panels"]
    (panel,) = [p for p in panels if p["title"] == title]
    return panel


def _datasource_variable(dashboard: dict[str, Any]) -> dict[str, Any]:
    variables: list[dict[str, Any]] = dashboard["templating"]["list"]
    (variable,) = [v for v in variables if v["name"] == "datasource"]
    assert variable["type"] == "datasource"
    return variable


def _datasource_uids(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """(JSON path, uid) of every datasource reference anywhere in a dashboard."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource" and isinstance(value, dict):
                yield f"{where}/{key}", value.get("uid", "")
            else:
                yield from _datasource_uids(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _datasource_uids(item, f"{where}/{index}")


def _top_level_split(expr: str, operator: str) -> list[str]:
    """`expr` split on `operator` where it stands outside brackets and quoted strings."""
    parts, depth, quoted, start = [], 0, False, 0
    for index, char in enumerate(expr):
        if char == '"' and (index == 0 or expr[index - 1] != "\\"):
            quoted = not quoted
        elif quoted:
            continue
        elif char in "({[":
            depth += 1
        elif char in ")}]":
            depth -= 1
        elif char == operator and depth == 0:
            parts.append(expr[start:index].strip())
            start = index + 1
    parts.append(expr[start:].strip())
    return parts


def test_metric_names_are_read_from_promql_not_from_label_values() -> None:
    expr = 'sum(rate(closeloop_x_total{topic="closeloop_y"}[5m])) / up{job="a"}'
    assert metric_names(expr) == {"closeloop_x_total", "up"}
    expr = 'sum by (pod) (container_memory_working_set_bytes{container="kube_x"})'
    assert metric_names(expr) == {"container_memory_working_set_bytes"}


def test_top_level_split_ignores_operators_in_brackets_and_strings() -> None:
    expr = 'sum(a{route="/x/y"}) / (sum(b) / 2)'
    assert _top_level_split(expr, "/") == ['sum(a{route="/x/y"})', "(sum(b) / 2)"]


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
        # The variable starts on the provisioned datasource, so compose needs no choice.
        assert _datasource_variable(dashboard)["current"]["value"] in uids
        for panel in dashboard["panels"]:
            assert panel["targets"], f"{panel['title']} queries nothing"


@pytest.mark.parametrize("file", sorted(dashboards()))
def test_every_panel_target_and_variable_reads_the_datasource_variable(file: str) -> None:
    # A hard-coded uid only exists in the Grafana provisioned here: an imported dashboard
    # would show nothing until every panel is edited by hand.
    dashboard = dashboards()[file]
    assert _datasource_variable(dashboard)["query"] == "prometheus"
    templated = {"type": "prometheus", "uid": DATASOURCE}
    for panel in dashboard["panels"]:
        assert panel["datasource"] == templated, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == templated, f"{panel['title']} {target['refId']}"
    # Query variables and annotations too: anything that names a datasource names the variable.
    assert {where: uid for where, uid in _datasource_uids(dashboard) if uid != DATASOURCE} == {}


def test_the_5xx_panel_is_the_share_of_5xx_among_all_requests() -> None:
    panel = _panel("closeloop-services.json", "HTTP errors (5xx share)")
    unit = panel["fieldConfig"]["defaults"]["unit"]
    assert unit in ("percent", "percentunit")
    # Every series shares the percent axis, so each one must be a share (no req/s beside it).
    assert panel["targets"]
    for target in panel["targets"]:
        parts = _top_level_split(target["expr"], "/")
        assert len(parts) == 2, f"{target['refId']} is not one ratio: {target['expr']}"
        numerator, denominator = parts
        assert metric_names(numerator) == metric_names(denominator) == {REQUESTS}
        assert re.search(r'status=~"5\.\."', numerator), numerator
        assert "status" not in denominator, "the share is of all requests, whatever their status"
        if unit == "percent":
            assert re.search(r"\*\s*100\b", target["expr"]), "percent needs the ratio x 100"


def test_4xx_requests_are_plotted_as_a_rate_of_their_own() -> None:
    # The "no events ingested" runbook sends operators to the 4xx rate on this dashboard.
    panel = _panel("closeloop-services.json", "HTTP client errors (4xx) by status")
    assert panel["fieldConfig"]["defaults"]["unit"] == "reqps"
    assert all('status=~"4.."' in target["expr"] for target in panel["targets"])


@pytest.mark.parametrize(
    ("title", "metric", "by", "unit"),
    [
        ("Targets up by service", "up", "job", "short"),
        ("Container restarts per pod", "kube_pod_container_status_restarts_total", "pod", "short"),
        ("CPU per pod", "container_cpu_usage_seconds_total", "pod", "short"),
        ("Memory working set per pod", "container_memory_working_set_bytes", "pod", "bytes"),
    ],
)
def test_services_dashboard_shows_health_restarts_cpu_and_memory(
    title: str, metric: str, by: str, unit: str
) -> None:
    panel = _panel("closeloop-services.json", title)
    assert panel["fieldConfig"]["defaults"]["unit"] == unit
    (target,) = panel["targets"]
    expr = target["expr"]
    assert metric_names(expr) == {metric}
    assert re.search(rf"\bby \({by}\)", expr), expr
    if metric.endswith("_total"):
        assert re.search(rf"\b(rate|increase)\({metric}\b", expr), "a counter is read as a rate"
    if metric.startswith("container_"):
        # cAdvisor also reports the pod's cgroup (container="") and the pause container: a
        # sum over pods without this filter counts each pod's usage twice.
        assert 'container="$service"' in expr


def test_every_metric_a_panel_or_rule_reads_is_exported_by_the_platform() -> None:
    known = _shared_metric_names() | set(METRIC_OWNERS) | set(EXPORTER_METRICS) | {"up"}
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

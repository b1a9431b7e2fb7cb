"""Reads the deploy files (compose, kustomize, dashboards, alert rules) for the tests."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import yaml

REPO_ROOT: Final = Path(__file__).resolve().parents[3]
DEPLOY: Final = REPO_ROOT / "deploy"
SCHEMAS: Final = Path(__file__).parent / "schemas"
DASHBOARDS: Final = DEPLOY / "grafana" / "dashboards"
ALERT_RULES: Final = DEPLOY / "prometheus" / "rules" / "closeloop.rules.yml"
OVERLAYS: Final = ("dev", "prod")
KUBECTL: Final = "/usr/bin/kubectl"

# Metrics only one service records: a panel or rule using them can show data only when that
# service runs. Shared metrics (libs/common/metrics.py) appear wherever a service does the work.
METRIC_OWNERS: Final = {
    "closeloop_dispatch_sends_total": "dispatch",
    "closeloop_loop_latency_seconds": "dispatch",
}
# Metrics of the cluster, not of Closeloop: only a Kubernetes Prometheus scraping these exporters
# has them (docker-compose's does not), so a panel on them is empty there by design.
EXPORTER_METRICS: Final = {
    "kube_pod_container_status_restarts_total": "kube-state-metrics",
    "container_cpu_usage_seconds_total": "kubelet (cAdvisor)",
    "container_memory_working_set_bytes": "kubelet (cAdvisor)",
}
# Names Prometheus itself makes, not a service.
_PROMETHEUS_METRICS: Final = frozenset({"up"})
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_METRIC = re.compile(r"\b((?:closeloop|kube|container)_[a-z0-9_]+)\b")
_UP = re.compile(r"\bup\{")


def render(overlay: str) -> list[dict[str, Any]]:
    """Every object `kubectl kustomize deploy/k8s/overlays/<overlay>` renders."""
    result = subprocess.run(
        [KUBECTL, "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, f"kustomize {overlay} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panel_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL expression) for every target of every panel."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERT_RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads (label values in quotes are not names)."""
    bare = _QUOTED.sub('""', expr)
    names = set(_METRIC.findall(bare))
    if _UP.search(bare):
        names.add("up")
    return names


def base_metric(name: str) -> str:
    """A histogram's series (`_bucket`, `_sum`, `_count`) belong to the histogram's name."""
    return re.sub(r"_(bucket|sum|count)$", "", name)


def owner(name: str) -> str | None:
    """The one service (or cluster exporter) whose running makes `name` exist, or None when
    any service does."""
    if name in _PROMETHEUS_METRICS:
        return None
    if name in EXPORTER_METRICS:
        return EXPORTER_METRICS[name]
    return METRIC_OWNERS.get(base_metric(name))


def used_metric_names() -> dict[str, set[str]]:
    """Every metric name a dashboard panel or alert rule reads -> where it is read."""
    used: dict[str, set[str]] = {}
    for file, dashboard in dashboards().items():
        for title, expr in panel_queries(dashboard):
            for name in metric_names(expr):
                used.setdefault(name, set()).add(f"{file}: {title}")
    for rule in alert_rules():
        for name in metric_names(rule["expr"]):
            used.setdefault(name, set()).add(f"alert {rule['alert']}")
    return used


def grace_period_seconds() -> int:
    """The terminationGracePeriodSeconds every rendered prod Deployment gives its pods."""
    periods = {
        deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        for deployment in of_kind(render("prod"), "Deployment").values()
    }
    assert len(periods) == 1, f"the services disagree on their grace period: {periods}"
    return int(periods.pop())


def prestop_seconds() -> int:
    """How long the preStop hook sleeps before Kubernetes sends SIGTERM."""
    deployment = next(iter(of_kind(render("prod"), "Deployment").values()))
    command = deployment["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"]
    return int(command["exec"]["command"][-1])

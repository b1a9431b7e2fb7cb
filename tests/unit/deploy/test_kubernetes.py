"""deploy/k8s: both overlays render, every object validates offline, and the shape is the loop's."""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from libs.common import topics
from libs.common.events.catalog import TOPICS
from libs.common.settings import Settings
from libs.devstack.services import DEFAULT_PORTS
from tests.unit.deploy.deploy_files import DEPLOY, OVERLAYS, SCHEMAS, of_kind, render

KUBERNETES_VERSION = "1.32.0"
PARTITIONS = 12
# Custom resources have no schema in kubernetes-validate: each is checked against its project's
# published CRD schema (the served version's openAPIV3Schema), vendored in
# tests/unit/deploy/schemas/ with its source repository, path and commit (see README.md there).
# KEDA, Strimzi and the Prometheus Operator are copied whole. CloudNativePG's Cluster CRD is
# ~400 KB, so only the subtree the prod manifest uses is copied, verbatim. Its trimmed objects
# keep just the fields the manifest sets, so a field the CRD allows but the subset lacks fails
# here until its subtree is vendored too.
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject.json",
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): "strimzi-kafkatopic.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "prometheus-servicemonitor.json",
    ("postgresql.cnpg.io/v1", "Cluster"): "cnpg-cluster.json",
}
HTTP_FACING = {"ingest", "dispatch"}
# Kinds whose pods come from spec.template.
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


@cache
def _rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(overlay))


def objects(overlay: str) -> list[dict[str, Any]]:
    return copy.deepcopy(list(_rendered(overlay)))


def _structural(node: Any) -> Any:
    """A Kubernetes structural schema as plain JSON Schema, with the API server's field handling.

    The API server keeps unknown fields only under `x-kubernetes-preserve-unknown-fields: true`.
    Anywhere else it prunes them, or rejects them under strict field validation (kubectl's default
    since 1.25), so a misspelt field never takes effect. `additionalProperties: false` on every
    object that declares `properties` and says nothing about other keys makes such a field an
    error here. `x-kubernetes-int-or-string` becomes the `anyOf` it stands for.
    """
    if isinstance(node, list):
        return [_structural(item) for item in node]
    if not isinstance(node, dict):
        return node
    schema = {key: _structural(value) for key, value in node.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields", False)
    ):
        schema["additionalProperties"] = False
    if schema.get("x-kubernetes-int-or-string") and "anyOf" not in schema:
        schema["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return schema


@cache
def _crd_validator(file: str) -> jsonschema.Draft7Validator:
    published = json.loads((SCHEMAS / file).read_text())
    properties = published.get("properties", {})
    assert {"apiVersion", "kind", "metadata", "spec"} <= set(properties), file
    return jsonschema.Draft7Validator(_structural(published))


def _validate(obj: dict[str, Any]) -> None:
    key = (obj["apiVersion"], obj["kind"])
    if key in CRD_SCHEMAS:
        error = jsonschema.exceptions.best_match(_crd_validator(CRD_SCHEMAS[key]).iter_errors(obj))
        if error is not None:
            raise error
    else:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def _consumed_topics(service: str) -> set[str]:
    return {topic.name for topic in TOPICS if service in topic.consumers}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_validates_offline(overlay: str) -> None:
    failures = []
    for obj in objects(overlay):
        try:
            _validate(obj)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as error:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {error.message}")
    assert failures == []


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("Deployment", ("spec", "template", "spec", "containers", 0, "livenesProbe")),
        ("ScaledObject", ("spec", "maxReplicas")),
        ("KafkaTopic", ("spec", "partition")),
        ("ServiceMonitor", ("spec", "endpoints", 0, "paht")),
        ("Cluster", ("spec", "instance")),
        ("Cluster", ("spec", "bootstrap", "initdb", "ownr")),
    ],
)
def test_validation_rejects_a_misspelt_field(kind: str, path: tuple[str | int, ...]) -> None:
    obj = next(obj for obj in objects("prod") if obj["kind"] == kind)
    node: Any = obj
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = 1
    with pytest.raises((kubernetes_validate.ValidationError, jsonschema.ValidationError)):
        _validate(obj)


@pytest.mark.parametrize("file", sorted(set(CRD_SCHEMAS.values())))
def test_every_crd_schema_names_the_published_file_it_was_copied_from(file: str) -> None:
    source = json.loads((SCHEMAS / file).read_text())["x-closeloop-source"]
    assert re.fullmatch(r"[\w.-]+/[\w.-]+", source["repository"])
    assert source["path"].endswith(".yaml")
    assert re.fullmatch(r"[0-9a-f]{40}", source["commit"])
    assert source["copied"]


def test_crd_validation_checks_types_and_keeps_preserved_fields_open() -> None:
    topic = next(obj for obj in objects("prod") if obj["kind"] == "KafkaTopic")
    topic["spec"]["config"]["any.broker.setting"] = "kept: x-kubernetes-preserve-unknown-fields"
    _validate(topic)
    topic["spec"]["partitions"] = "12"
    with pytest.raises(jsonschema.ValidationError):
        _validate(topic)
    monitor = next(obj for obj in objects("prod") if obj["kind"] == "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["targetPort"] = 8080
    _validate(monitor)
    monitor["spec"]["endpoints"][0]["targetPort"] = 8080.5
    with pytest.raises(jsonschema.ValidationError):
        _validate(monitor)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_has_a_deployment_service_and_disruption_budget(overlay: str) -> None:
    rendered = objects(overlay)
    assert set(DEFAULT_PORTS) <= set(of_kind(rendered, "Deployment"))
    assert set(DEFAULT_PORTS) <= set(of_kind(rendered, "Service"))
    assert set(DEFAULT_PORTS) <= set(of_kind(rendered, "PodDisruptionBudget"))
    for name, port in DEFAULT_PORTS.items():
        service = of_kind(rendered, "Service")[name]
        assert service["spec"]["ports"][0]["port"] == port


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_probe_health_and_readiness_and_run_locked_down(overlay: str) -> None:
    for name, deployment in of_kind(objects(overlay), "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["args"] == [name]
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["resources"]["requests"]["cpu"]
        assert container["resources"]["limits"]["memory"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_http_services_scale_on_cpu_and_consumers_on_lag_capped_at_partitions(
    overlay: str,
) -> None:
    rendered = objects(overlay)
    scaled_objects = of_kind(rendered, "ScaledObject")
    hpas = of_kind(rendered, "HorizontalPodAutoscaler")
    for name in DEFAULT_PORTS:
        consumed = _consumed_topics(name)
        if not consumed:
            assert name in hpas and name not in scaled_objects
            continue
        scaled = scaled_objects[name]["spec"]
        assert scaled["scaleTargetRef"]["name"] == name
        assert scaled["maxReplicaCount"] <= PARTITIONS
        kafka = [t["metadata"] for t in scaled["triggers"] if t["type"] == "kafka"]
        assert {trigger["topic"] for trigger in kafka} == consumed
        assert {trigger["consumerGroup"] for trigger in kafka} == {f"closeloop-{name}"}
        has_cpu = any(trigger["type"] == "cpu" for trigger in scaled["triggers"])
        assert has_cpu == (name in HTTP_FACING)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_topic_is_a_kafka_topic_with_the_platform_partitions(overlay: str) -> None:
    kafka_topics = of_kind(objects(overlay), "KafkaTopic")
    assert {topic["spec"]["topicName"] for topic in kafka_topics.values()} == set(topics.ALL)
    for topic in kafka_topics.values():
        assert topic["spec"]["partitions"] == PARTITIONS
        assert int(topic["spec"]["config"]["retention.ms"]) > 0
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "closeloop"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_topics_keep_events_no_longer_than_the_inbox_assumes(overlay: str) -> None:
    """Inboxes outlive topic_retention_hours (Settings refuses less): the loop's topics must not
    keep events longer, or an event redelivered after its id was forgotten is handled twice.
    The DLQ is longer on purpose: replays from it are by hand (docs/operations.md)."""
    kafka_topics = of_kind(objects(overlay), "KafkaTopic")
    kept_ms = Settings().topic_retention_hours * 3_600_000
    for topic in kafka_topics.values():
        if topic["spec"]["topicName"] != topics.DLQ:
            assert int(topic["spec"]["config"]["retention.ms"]) <= kept_ms


def _pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod spec(s) an object creates pods from, whatever the workload kind."""
    if obj["kind"] in WORKLOADS:
        return [obj["spec"]["template"]["spec"]]
    if obj["kind"] == "CronJob":
        return [obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    if obj["kind"] == "Pod":
        return [obj["spec"]]
    return []


def _pinned_image(overlay: str) -> str:
    """The image reference the overlay's `images:` entry asks for (tag or digest)."""
    kustomization = yaml.safe_load(
        (DEPLOY / "k8s" / "overlays" / overlay / "kustomization.yaml").read_text()
    )
    (entry,) = kustomization["images"]
    if "digest" in entry:
        return f"{entry['newName']}@{entry['digest']}"
    return f"{entry['newName']}:{entry['newTag']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_the_image_its_overlay_pins(overlay: str) -> None:
    # kustomize matches an `images:` entry on the name the resources carry at that point; the
    # base has already rewritten `closeloop` to its registry name, so an overlay entry on any
    # other name is silently ignored and every pod runs the base's `:latest`.
    pinned = _pinned_image(overlay)
    assert not pinned.endswith(":latest"), "an overlay pins a version, never latest"
    images = {
        f"{obj['kind']}/{obj['metadata']['name']}/{container['name']}": container["image"]
        for obj in objects(overlay)
        for pod in _pod_specs(obj)
        for container in pod.get("initContainers", []) + pod["containers"]
    }
    # One Deployment container and one migration container per service.
    assert len(images) == 2 * len(DEFAULT_PORTS)
    assert {where: image for where, image in images.items() if image != pinned} == {}


def test_migration_job_migrates_every_service() -> None:
    job = of_kind(objects("prod"), "Job")["closeloop-migrate"]
    containers = job["spec"]["template"]["spec"]["containers"]
    assert sorted(container["args"] for container in containers) == sorted(
        [name, "migrate"] for name in DEFAULT_PORTS
    )


def test_prod_runs_postgres_on_cloudnativepg_and_dev_does_not() -> None:
    assert of_kind(objects("prod"), "Cluster")["closeloop-db"]["spec"]["instances"] >= 3
    assert not of_kind(objects("dev"), "Cluster")


def test_only_dev_generates_secrets_and_the_example_is_a_valid_secret() -> None:
    dev = objects("dev")
    referenced = {
        source["secretRef"]["name"]
        for deployment in of_kind(dev, "Deployment").values()
        for source in deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        if "secretRef" in source
    }
    assert referenced == set(of_kind(dev, "Secret")), "dev generates the secret its pods read"
    assert not of_kind(objects("prod"), "Secret")
    example = yaml.safe_load((DEPLOY / "k8s" / "base" / "secret.example.yaml").read_text())
    kubernetes_validate.validate(example, KUBERNETES_VERSION, strict=True)
    assert all("CHANGE-ME" in value for value in example["stringData"].values())


def test_network_policies_let_only_ingress_reach_ingest_and_dispatch() -> None:
    policies = of_kind(objects("prod"), "NetworkPolicy")
    assert policies["closeloop-default-deny"]["spec"]["policyTypes"] == ["Ingress", "Egress"]
    public = policies["closeloop-ingress-public"]["spec"]["podSelector"]["matchExpressions"]
    assert set(public[0]["values"]) == HTTP_FACING


def test_service_monitor_scrapes_every_service_metrics() -> None:
    rendered = objects("prod")
    monitor = of_kind(rendered, "ServiceMonitor")["closeloop"]["spec"]
    selected = {
        name
        for name, service in of_kind(rendered, "Service").items()
        if monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    }
    assert selected == set(DEFAULT_PORTS)
    assert monitor["endpoints"][0]["path"] == "/metrics"


def test_the_console_is_reached_through_ingress_and_reaches_only_management_apis() -> None:
    policies = of_kind(objects("prod"), "NetworkPolicy")
    ingress = policies["closeloop-ingress-console"]["spec"]
    assert ingress["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "console"}
    egress = policies["closeloop-console-management"]["spec"]["egress"]
    reached = {
        rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]: rule["ports"][0][
            "port"
        ]
        for rule in egress
    }
    assert reached == {name: DEFAULT_PORTS[name] for name in reached}
    assert set(reached) == {"profile", "segment", "journey", "content", "dispatch", "attribution"}
    admitted = policies["closeloop-management-from-console"]["spec"]["podSelector"]
    assert set(admitted["matchExpressions"][0]["values"]) == set(reached)

"""docker-compose.yml: valid Compose; every service migrated and health-checked; every topic."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
import yaml

from libs.common import topics
from libs.devstack.services import DEFAULT_PORTS
from tests.unit.deploy.deploy_files import REPO_ROOT, SCHEMAS, grace_period_seconds


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    return loaded


def test_compose_file_validates_against_the_compose_specification(
    compose: dict[str, Any],
) -> None:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    errors = [
        f"{error.json_path}: {error.message}"
        for error in jsonschema.Draft201909Validator(schema).iter_errors(compose)
    ]
    assert errors == []


def test_compose_schema_rejects_a_misspelt_key(compose: dict[str, Any]) -> None:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    broken = {**compose, "services": {**compose["services"], "typo": {"imgae": "x"}}}
    assert list(jsonschema.Draft201909Validator(schema).iter_errors(broken))


def test_every_service_runs_after_its_migration_with_a_readiness_healthcheck(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name, port in DEFAULT_PORTS.items():
        service = services[name]
        assert service["command"] == [name]
        assert service["environment"]["CLOSELOOP_HTTP_PORT"] == str(port)
        assert f"http://127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"])
        conditions = {dep: spec["condition"] for dep, spec in service["depends_on"].items()}
        assert conditions == {
            "kafka": "service_healthy",
            "kafka-init": "service_completed_successfully",
            "postgres": "service_healthy",
            f"migrate-{name}": "service_completed_successfully",
        }
        assert services[f"migrate-{name}"]["command"] == [name, "migrate"]


def test_kafka_runs_in_kraft_mode_from_a_pinned_official_image(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", kafka["image"])
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "ZOOKEEPER" not in " ".join(kafka["environment"])


def test_every_image_is_pinned(compose: dict[str, Any]) -> None:
    images = [service["image"] for service in compose["services"].values()]
    third_party = [image for image in images if not image.startswith("closeloop:")]
    assert all(re.search(r":v?\d+\.\d+", image) for image in third_party), third_party


def test_topic_init_creates_every_topic_with_partitions(compose: dict[str, Any]) -> None:
    script = " ".join(compose["services"]["kafka-init"]["command"])
    created = set(re.findall(r"closeloop\.[a-z]+\.v\d+", script))
    assert created == set(topics.ALL)
    assert compose["services"]["kafka-init"]["environment"]["PARTITIONS"] == "12"


def test_prometheus_and_grafana_are_provisioned_from_deploy_files(
    compose: dict[str, Any],
) -> None:
    mounts = [
        volume.split(":")[0]
        for name in ("prometheus", "grafana")
        for volume in compose["services"][name]["volumes"]
        if volume.startswith("./")
    ]
    for mount in mounts:
        assert (REPO_ROOT / mount).exists(), mount
    scraped = yaml.safe_load((REPO_ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {
        target
        for job in scraped["scrape_configs"]
        for config in job["static_configs"]
        for target in config["targets"]
    }
    assert {f"{name}:{port}" for name, port in DEFAULT_PORTS.items()} <= targets


def test_compose_stop_grace_matches_kubernetes(compose: dict[str, Any]) -> None:
    grace = compose["services"]["ingest"]["stop_grace_period"]
    assert grace == f"{grace_period_seconds()}s"

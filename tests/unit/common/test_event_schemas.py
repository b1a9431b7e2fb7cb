"""The committed event contract matches the models, stays compatible, and its examples hold."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import orjson
import pytest
import yaml

from contracts.compat import breaking_changes
from contracts.schemas import (
    ASYNCAPI_PATH,
    EVENT_SCHEMAS_DIR,
    REPO_ROOT,
    event_schema,
    schema_path,
    stale_files,
)
from libs.common import topics
from libs.common.bus import dlq
from libs.common.events import Event, EventData, decode, encode, registry
from libs.common.events.catalog import DLQ_HEADERS, TOPICS

MODELS = registry.all()
COMMITTED = sorted(EVENT_SCHEMAS_DIR.glob("*/v*.json"))


def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is not None


def _is_uri(value: object) -> bool:
    return not isinstance(value, str) or bool(urlsplit(value).scheme)


# jsonschema checks date-time and uri only with optional packages; these keep the test honest.
_FORMATS = jsonschema.FormatChecker()
_FORMATS.checks("date-time", raises=ValueError)(_is_date_time)
_FORMATS.checks("uri", raises=ValueError)(_is_uri)


def _name(model: type[EventData]) -> str:
    return f"{model.event_type}.v{model.event_version}"


def _relative(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


def _read(path: Path) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def _validator(schema: dict[str, Any]) -> Any:
    return jsonschema.Draft202012Validator(schema, format_checker=_FORMATS)


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        pytest.fail("git is not installed: the compatibility test reads the history of schemas/")


def first_committed(repo: Path, path: Path) -> dict[str, Any] | None:
    """The schema as first committed to git, or None when it has no history yet."""
    if _git(repo, "rev-parse", "--is-inside-work-tree").returncode != 0:
        pytest.fail(f"{repo} is not a git checkout: the compatibility test needs its history")
    if _git(repo, "rev-parse", "--quiet", "--verify", "HEAD").returncode != 0:
        return None
    relative = str(path.relative_to(repo))
    log = _git(repo, "log", "--diff-filter=A", "--format=%H", "--", relative)
    if log.returncode != 0:
        pytest.fail(f"git log failed: {log.stderr}")
    additions = log.stdout.split()
    if not additions:
        return None
    shown = _git(repo, "show", f"{additions[-1]}:{relative}")
    if shown.returncode != 0:
        pytest.fail(f"git show failed: {shown.stderr}")
    first: dict[str, Any] = json.loads(shown.stdout)
    return first


@pytest.mark.parametrize("model", MODELS, ids=_name)
def test_committed_schema_is_what_the_model_generates(model: type[EventData]) -> None:
    path = schema_path(model)
    assert path.exists(), f"{_relative(path)} is missing: run `make schemas`"
    generated = event_schema(model)
    committed = _read(path)
    if committed == generated:
        return
    breaking = breaking_changes(committed, generated)
    if breaking:
        pytest.fail(
            f"{model.__name__} changed {_relative(path)} incompatibly:\n  "
            + "\n  ".join(breaking)
            + f"\nKeep this model as it was and add {model.event_type} "
            f"v{model.event_version + 1} as a new class (docs/events.md, 'A new version')."
        )
    pytest.fail(f"{_relative(path)} is out of date: run `make schemas` and commit the result")


def test_asyncapi_and_docs_are_what_the_catalogue_generates() -> None:
    stale = stale_files()
    assert stale == [], "run `make schemas` and commit the result:\n  " + "\n  ".join(stale)


@pytest.mark.parametrize("path", COMMITTED, ids=_relative)
def test_committed_schema_is_compatible_with_its_first_commit(path: Path) -> None:
    first = first_committed(REPO_ROOT, path) or _read(path)
    breaking = breaking_changes(first, _read(path))
    assert breaking == [], (
        f"{_relative(path)} no longer accepts what it accepted when first committed:\n  "
        + "\n  ".join(breaking)
        + "\nRestore it and add the change as a new version (docs/events.md, 'A new version')."
    )


def test_first_committed_reads_the_version_git_first_saw(tmp_path: Path) -> None:
    schema = tmp_path / "schemas" / "events" / "x.y" / "v1.json"
    schema.parent.mkdir(parents=True)
    assert _git(tmp_path, "init", "--quiet").returncode == 0
    assert first_committed(tmp_path, schema) is None
    for title in ("first", "second"):
        schema.write_text(json.dumps({"title": title}))
        _git(tmp_path, "add", ".")
        committed = _git(
            tmp_path,
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "--quiet",
            "-m",
            title,
        )
        assert committed.returncode == 0, committed.stderr
    assert first_committed(tmp_path, schema) == {"title": "first"}


@pytest.mark.parametrize("model", MODELS, ids=_name)
def test_every_example_validates_and_survives_the_wire(model: type[EventData]) -> None:
    schema = _read(schema_path(model))
    examples = schema.get("examples", [])
    assert examples, f"{model.__name__} needs an example in json_schema_extra"
    for example in examples:
        _validator(schema).validate(example)
        event = Event(data=model.model_validate(example), key="prf_test", source="test")
        key, value, headers = encode(event)
        _validator(schema).validate(orjson.loads(value))
        assert decode(key, value, headers) == event


@pytest.mark.parametrize("model", MODELS, ids=_name)
def test_schema_is_identified_by_its_dataschema_uri(model: type[EventData]) -> None:
    schema = _read(schema_path(model))
    _, _, headers = encode(Event(data=_first_example(model), key="prf_test", source="test"))
    assert schema["$id"].encode() == dict(headers)["ce_dataschema"]
    assert schema["title"] == model.event_type


def test_there_is_a_schema_for_every_registered_type_and_no_other() -> None:
    expected = {schema_path(model) for model in MODELS}
    assert set(COMMITTED) == expected, "run `make schemas`; delete schemas no model generates"


def test_the_catalogue_covers_every_topic_and_every_type() -> None:
    assert sorted(topic.name for topic in TOPICS) == sorted(topics.ALL)
    assert {model.topic for model in MODELS} <= set(topics.ALL)


def test_the_catalogue_documents_the_headers_the_dlq_writes() -> None:
    written = {dlq.ERROR, dlq.ERROR_TYPE, dlq.SOURCE_TOPIC, dlq.SOURCE_PARTITION}
    written |= {dlq.SOURCE_OFFSET, dlq.GROUP, dlq.FAILED_AT}
    assert {header.name for header in DLQ_HEADERS} == written


def test_asyncapi_lists_every_topic_once() -> None:
    document = _asyncapi()
    addresses = [channel["address"] for channel in document["channels"].values()]
    assert sorted(addresses) == sorted(topics.ALL)


@pytest.mark.parametrize("model", MODELS, ids=_name)
def test_asyncapi_lists_every_type_once_as_a_message(model: type[EventData]) -> None:
    document = _asyncapi()
    reference = {"$ref": f"#/components/messages/{_name(model)}"}
    carriers = [
        channel["address"]
        for channel in document["channels"].values()
        if reference in channel["messages"].values()
    ]
    assert carriers == [model.topic]
    message = document["components"]["messages"][_name(model)]
    assert message["name"] == model.event_type
    payload = ASYNCAPI_PATH.parent / message["payload"]["$ref"]
    assert payload.resolve() == schema_path(model)


def test_asyncapi_has_no_message_without_a_registered_type() -> None:
    messages = set(_asyncapi()["components"]["messages"])
    assert messages == {_name(model) for model in MODELS} | {"dead_letter"}


def test_asyncapi_documents_the_dead_letter_headers() -> None:
    headers = _asyncapi()["components"]["schemas"]["DeadLetterHeaders"]
    assert sorted(headers["required"]) == sorted(header.name for header in DLQ_HEADERS)


def _asyncapi() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(ASYNCAPI_PATH.read_text(encoding="utf-8"))
    return document


def _first_example(model: type[EventData]) -> EventData:
    return model.model_validate(_read(schema_path(model))["examples"][0])

"""breaking_changes: which schema edits keep a version and which need a new one."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from contracts.compat import breaking_changes

Schema = dict[str, Any]


def _schema() -> Schema:
    return {
        "type": "object",
        "title": "message.clicked",
        "description": "The recipient clicked a link.",
        "properties": {
            "profile_id": {"type": "string", "minLength": 1, "maxLength": 128},
            "channel": {"type": "string", "pattern": "^[a-z]+$"},
            "reason": {"enum": ["consent", "frequency_cap"], "type": "string"},
            "occurred_at": {"type": "string", "format": "date-time"},
            "credit_share": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "subject": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
            "tags": {"type": "array", "items": {"type": "string"}},
            "journey": {"$ref": "#/$defs/JourneyRef"},
            "properties": {"type": "object", "additionalProperties": True},
        },
        "required": ["profile_id", "reason", "occurred_at", "journey"],
        "$defs": {
            "JourneyRef": {
                "type": "object",
                "properties": {
                    "journey_id": {"type": "string", "maxLength": 128},
                    "journey_version": {"type": "integer", "minimum": 1},
                },
                "required": ["journey_id"],
            }
        },
    }


def _changed(edit: Callable[[Schema], None]) -> Schema:
    schema = copy.deepcopy(_schema())
    edit(schema)
    return schema


def _property(schema: Schema, name: str) -> Schema:
    found: Schema = schema["properties"][name]
    return found


def _journey(schema: Schema) -> Schema:
    found: Schema = schema["$defs"]["JourneyRef"]
    return found


def test_an_unchanged_schema_is_compatible() -> None:
    assert breaking_changes(_schema(), _schema()) == []


def test_adding_an_optional_property_is_compatible() -> None:
    new = _changed(lambda s: s["properties"].update(url={"type": "string", "format": "uri"}))
    assert breaking_changes(_schema(), new) == []


def test_adding_an_optional_property_to_a_referenced_schema_is_compatible() -> None:
    new = _changed(lambda s: _journey(s)["properties"].update(node_id={"type": "string"}))
    assert breaking_changes(_schema(), new) == []


def test_editing_descriptions_titles_and_examples_is_compatible() -> None:
    def annotate(schema: Schema) -> None:
        schema["description"] = "Someone clicked a tracked link."
        schema["examples"] = [{"profile_id": "prf_1"}]
        _property(schema, "channel").update(title="Channel", description="The channel.")
        _journey(schema)["description"] = "The journey step."
        schema["x-owner"] = "dispatch"

    assert breaking_changes(_schema(), _changed(annotate)) == []


def test_reordering_an_enum_is_compatible() -> None:
    new = _changed(lambda s: _property(s, "reason").update(enum=["frequency_cap", "consent"]))
    assert breaking_changes(_schema(), new) == []


def test_removing_a_property_is_breaking() -> None:
    new = _changed(lambda s: s["properties"].pop("subject"))
    assert breaking_changes(_schema(), new) == ["subject: property removed"]


def test_adding_a_required_property_is_breaking() -> None:
    def add(schema: Schema) -> None:
        schema["properties"]["url"] = {"type": "string"}
        schema["required"].append("url")

    assert breaking_changes(_schema(), _changed(add)) == ["url: required property added"]


def test_making_an_optional_property_required_is_breaking() -> None:
    new = _changed(lambda s: s["required"].append("channel"))
    assert breaking_changes(_schema(), new) == ["channel: optional property became required"]


def test_making_a_required_property_optional_is_breaking() -> None:
    new = _changed(lambda s: s["required"].remove("occurred_at"))
    assert breaking_changes(_schema(), new) == ["occurred_at: required property became optional"]


@pytest.mark.parametrize(
    ("name", "new_type"),
    [("profile_id", "integer"), ("credit_share", "integer"), ("credit_share", ["number", "null"])],
)
def test_changing_a_property_type_is_breaking(name: str, new_type: str | list[str]) -> None:
    new = _changed(lambda s: _property(s, name).update(type=new_type))
    assert breaking_changes(_schema(), new) == [
        f"{name}: type changed from {_types(_property(_schema(), name)['type'])} "
        f"to {_types(new_type)}"
    ]


def test_making_a_nullable_property_non_nullable_is_breaking() -> None:
    new = _changed(lambda s: s["properties"].update(subject={"type": "string"}))
    assert breaking_changes(_schema(), new) != []
    assert breaking_changes(new, _schema()) != []


@pytest.mark.parametrize(
    "enum", [["consent"], ["consent", "frequency_cap", "quiet_hours"], ["consent", "quiet_hours"]]
)
def test_changing_an_enum_is_breaking(enum: list[str]) -> None:
    new = _changed(lambda s: _property(s, "reason").update(enum=enum))
    assert len(breaking_changes(_schema(), new)) == 1
    assert breaking_changes(_schema(), new)[0].startswith("reason: enum changed")


@pytest.mark.parametrize("new_format", ["date", None])
def test_changing_or_dropping_a_format_is_breaking(new_format: str | None) -> None:
    def edit(schema: Schema) -> None:
        _property(schema, "occurred_at").pop("format")
        if new_format:
            _property(schema, "occurred_at")["format"] = new_format

    assert breaking_changes(_schema(), _changed(edit))[0].startswith("occurred_at: format changed")


def test_adding_a_format_is_breaking() -> None:
    new = _changed(lambda s: _property(s, "channel").update(format="hostname"))
    assert breaking_changes(_schema(), new) == ['channel: format changed from (none) to "hostname"']


@pytest.mark.parametrize(
    ("name", "constraint", "value"),
    [
        ("profile_id", "maxLength", 64),
        ("profile_id", "minLength", 2),
        ("credit_share", "maximum", 0.5),
        ("credit_share", "exclusiveMinimum", 0.1),
        ("tags", "maxItems", 10),
    ],
)
def test_tightening_a_constraint_is_breaking(name: str, constraint: str, value: float) -> None:
    new = _changed(lambda s: _property(s, name).update({constraint: value}))
    assert len(breaking_changes(_schema(), new)) == 1
    assert f"{name}: {constraint} tightened" in breaking_changes(_schema(), new)[0]


@pytest.mark.parametrize(
    ("name", "constraint", "value"),
    [("profile_id", "maxLength", 255), ("profile_id", "minLength", None)],
)
def test_loosening_a_constraint_is_breaking_too(name: str, constraint: str, value: int) -> None:
    # An old consumer would dead-letter what a producer on the new version may now write.
    def edit(schema: Schema) -> None:
        _property(schema, name).pop(constraint)
        if value is not None:
            _property(schema, name)[constraint] = value

    assert f"{name}: {constraint} loosened" in breaking_changes(_schema(), _changed(edit))[0]


def test_changing_a_pattern_is_breaking() -> None:
    new = _changed(lambda s: _property(s, "channel").update(pattern="^[a-z_]+$"))
    assert breaking_changes(_schema(), new)[0].startswith("channel: pattern changed")


def test_a_change_behind_a_ref_is_found_and_named_by_its_path() -> None:
    new = _changed(lambda s: _journey(s)["properties"]["journey_version"].update(type="string"))
    assert breaking_changes(_schema(), new) == [
        "journey.journey_version: type changed from [integer] to [string]"
    ]


def test_a_required_property_added_behind_a_ref_is_breaking() -> None:
    new = _changed(lambda s: _journey(s)["required"].append("journey_version"))
    assert breaking_changes(_schema(), new) == [
        "journey.journey_version: optional property became required"
    ]


def test_a_change_to_array_items_is_breaking() -> None:
    new = _changed(lambda s: _property(s, "tags")["items"].update(type="integer"))
    assert breaking_changes(_schema(), new) == ["tags[]: type changed from [string] to [integer]"]


def test_forbidding_additional_properties_is_breaking() -> None:
    new = _changed(lambda s: _property(s, "properties").update(additionalProperties=False))
    assert breaking_changes(_schema(), new) == ["properties: additionalProperties now forbidden"]


def test_adding_a_property_where_none_were_allowed_is_breaking() -> None:
    closed = _changed(lambda s: s.update(additionalProperties=False))
    opened = copy.deepcopy(closed)
    opened["properties"]["url"] = {"type": "string"}
    assert breaking_changes(closed, opened) == ["url: property added where none were allowed"]


def test_recursive_refs_are_compared_once() -> None:
    tree: Schema = {
        "$ref": "#/$defs/Condition",
        "$defs": {
            "Condition": {
                "type": "object",
                "properties": {"all": {"type": "array", "items": {"$ref": "#/$defs/Condition"}}},
            }
        },
    }
    changed = copy.deepcopy(tree)
    changed["$defs"]["Condition"]["properties"]["all"]["maxItems"] = 5
    assert breaking_changes(tree, tree) == []
    assert breaking_changes(tree, changed) == ["all: maxItems tightened from (none) to 5"]


def _types(declared: str | list[str]) -> str:
    names = [declared] if isinstance(declared, str) else declared
    return "[" + ", ".join(sorted(names)) + "]"

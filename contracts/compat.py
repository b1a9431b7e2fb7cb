"""Whether a new JSON Schema of an event can replace the old one without breaking anyone."""

from __future__ import annotations

import json
from typing import Any

Schema = dict[str, Any]

# Keywords that document a schema without changing what it accepts.
_ANNOTATIONS = frozenset(
    {
        "$comment",
        "$defs",
        "$id",
        "$schema",
        "default",
        "definitions",
        "deprecated",
        "description",
        "examples",
        "readOnly",
        "title",
        "writeOnly",
    }
)
_LOWER_BOUNDS = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")
_UPPER_BOUNDS = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")
_ALTERNATIVES = ("anyOf", "oneOf", "allOf")
_STRUCTURE = frozenset(
    {"$ref", "type", "properties", "required", "additionalProperties", "items", "enum"}
)
_HANDLED = _ANNOTATIONS | _STRUCTURE | set(_LOWER_BOUNDS) | set(_UPPER_BOUNDS) | set(_ALTERNATIVES)


def breaking_changes(old_schema: Schema, new_schema: Schema) -> list[str]:
    """Every change from old to new that a producer or a consumer on either version would feel.

    Compatibility goes both ways, because producers and consumers deploy independently: a
    consumer on the new version reads events produced with the old one (and replays old
    topics), and a consumer on the old version reads events produced with the new one. So the
    only safe change is adding an optional property (consumers ignore unknown ones) and editing
    annotations; everything else, loosening a constraint included, is reported.
    """
    comparison = _Comparison(old_schema, new_schema)
    comparison.compare(old_schema, new_schema, "")
    return comparison.problems


class _Comparison:
    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self.old_root = old_root
        self.new_root = new_root
        self.problems: list[str] = []
        self._seen: set[tuple[str, str]] = set()

    def compare(self, old: Schema, new: Schema, path: str) -> None:
        refs = (old.get("$ref", ""), new.get("$ref", ""))
        if all(refs):
            if refs in self._seen:
                return
            self._seen.add(refs)
        old, new = _resolve(old, self.old_root), _resolve(new, self.new_root)
        self._types(old, new, path)
        self._enums(old, new, path)
        self._bounds(old, new, path)
        self._properties(old, new, path)
        self._additional_properties(old, new, path)
        self._items(old, new, path)
        self._alternatives(old, new, path)
        self._other_keywords(old, new, path)

    def _report(self, path: str, problem: str) -> None:
        self.problems.append(f"{path or '(event)'}: {problem}")

    def _types(self, old: Schema, new: Schema, path: str) -> None:
        before, after = _types(old), _types(new)
        if before != after:
            self._report(path, f"type changed from {_show(before)} to {_show(after)}")

    def _enums(self, old: Schema, new: Schema, path: str) -> None:
        before, after = _values(old.get("enum")), _values(new.get("enum"))
        if before != after:
            self._report(path, f"enum changed from {_show(before)} to {_show(after)}")

    def _bounds(self, old: Schema, new: Schema, path: str) -> None:
        for keyword in _LOWER_BOUNDS:
            self._bound(keyword, old.get(keyword), new.get(keyword), path, lower=True)
        for keyword in _UPPER_BOUNDS:
            self._bound(keyword, old.get(keyword), new.get(keyword), path, lower=False)

    def _bound(self, keyword: str, before: Any, after: Any, path: str, *, lower: bool) -> None:
        if before == after:
            return
        if before is None:
            tightened = True
        elif after is None:
            tightened = False
        else:
            tightened = after > before if lower else after < before
        how = "tightened" if tightened else "loosened"
        self._report(path, f"{keyword} {how} from {_show(before)} to {_show(after)}")

    def _properties(self, old: Schema, new: Schema, path: str) -> None:
        old_properties: Schema = old.get("properties", {})
        new_properties: Schema = new.get("properties", {})
        old_required = set(old.get("required", []))
        new_required = set(new.get("required", []))
        for name in sorted(old_properties.keys() - new_properties.keys()):
            self._report(_child(path, name), "property removed")
        for name in sorted(new_properties.keys() - old_properties.keys()):
            if name in new_required:
                self._report(_child(path, name), "required property added")
            elif old.get("additionalProperties") is False:
                self._report(_child(path, name), "property added where none were allowed")
        for name in sorted(old_properties.keys() & new_properties.keys()):
            if name in new_required - old_required:
                self._report(_child(path, name), "optional property became required")
            if name in old_required - new_required:
                self._report(_child(path, name), "required property became optional")
            self.compare(old_properties[name], new_properties[name], _child(path, name))

    def _additional_properties(self, old: Schema, new: Schema, path: str) -> None:
        self._subschema("additionalProperties", old, new, _child(path, "*"), path)

    def _items(self, old: Schema, new: Schema, path: str) -> None:
        self._subschema("items", old, new, f"{path}[]", path)

    def _subschema(self, keyword: str, old: Schema, new: Schema, inner: str, path: str) -> None:
        if keyword not in old and keyword not in new:
            return
        before, after = _open(old.get(keyword, True)), _open(new.get(keyword, True))
        if isinstance(before, dict) and isinstance(after, dict):
            self.compare(before, after, inner)
        elif before != after:
            self._report(path, f"{keyword} now {'forbidden' if after is False else 'allowed'}")

    def _alternatives(self, old: Schema, new: Schema, path: str) -> None:
        for keyword in _ALTERNATIVES:
            before, after = old.get(keyword, []), new.get(keyword, [])
            if len(before) != len(after):
                self._report(path, f"{keyword} changed from {len(before)} to {len(after)} schemas")
                continue
            for old_branch, new_branch in zip(before, after, strict=True):
                self.compare(old_branch, new_branch, path)

    def _other_keywords(self, old: Schema, new: Schema, path: str) -> None:
        keywords = (old.keys() | new.keys()) - _HANDLED
        for keyword in sorted(k for k in keywords if not k.startswith("x-")):
            before, after = old.get(keyword), new.get(keyword)
            if before != after:
                self._report(path, f"{keyword} changed from {_show(before)} to {_show(after)}")


def _resolve(schema: Schema, root: Schema) -> Schema:
    """The schema a `$ref` points to, with the referring schema's own keywords on top."""
    while "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"only local $refs are supported, not {ref!r}")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        siblings = {key: value for key, value in schema.items() if key != "$ref"}
        schema = {**target, **siblings}
    return schema


def _open(schema: Schema | bool) -> Schema | bool:
    """A schema with `true`, the schema that accepts anything, spelt as `{}`."""
    return {} if schema is True else schema


def _types(schema: Schema) -> frozenset[str] | None:
    declared = schema.get("type")
    if declared is None:
        return None
    return frozenset([declared] if isinstance(declared, str) else declared)


def _values(values: list[Any] | None) -> frozenset[str] | None:
    if values is None:
        return None
    return frozenset(json.dumps(value, sort_keys=True) for value in values)


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, frozenset):
        return "[" + ", ".join(sorted(value)) + "]"
    return json.dumps(value, sort_keys=True)


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name

"""What the journey canvas saves: the graph passed on as it is, the layout held to its shape."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.console.schemas import JourneyDraft

_GRAPH = {
    "entry": {"event": "Signed Up"},
    "start": "hello",
    "nodes": {"hello": {"type": "send", "channel": "email", "template_id": "tpl"}},
}


def _draft(**changes: Any) -> dict[str, Any]:
    return {"name": "Welcome", "definition": _GRAPH, **changes}


def _refused_at(body: dict[str, Any]) -> tuple[str | int, ...]:
    with pytest.raises(ValidationError) as refused:
        JourneyDraft.model_validate(body)
    return tuple(refused.value.errors()[0]["loc"])


def test_the_graph_goes_on_without_the_parts_it_does_not_give() -> None:
    draft = JourneyDraft.model_validate(_draft(layout={"nodes": {"hello": {"x": 10, "y": -4.5}}}))
    assert draft.definition.graph() == _GRAPH
    assert draft.layout.model_dump() == {"entry": None, "nodes": {"hello": {"x": 10, "y": -4.5}}}


def test_a_layout_out_of_shape_is_refused_naming_the_place() -> None:
    far = {"nodes": {"hello": {"x": 1e7, "y": 0}}}
    assert _refused_at(_draft(layout=far)) == ("layout", "nodes", "hello", "x")
    assert _refused_at(_draft(layout={"nodes": {"hello": {"x": "nan", "y": 0}}}))[:3] == (
        "layout",
        "nodes",
        "hello",
    )
    assert _refused_at(_draft(layout={"nodes": {"no spaces": {"x": 0, "y": 0}}}))[:2] == (
        "layout",
        "nodes",
    )
    assert _refused_at(_draft(layout={"zoom": 2})) == ("layout", "zoom")


def test_a_blank_name_or_a_field_the_graph_does_not_have_is_refused() -> None:
    assert _refused_at(_draft(name="   ")) == ("name",)
    assert _refused_at(_draft(definition={**_GRAPH, "colour": "red"})) == ("definition", "colour")

"""Template and segment references: unknown ones are refused naming the node or the entry."""

from __future__ import annotations

import pytest

from services.journey.conditions import InvalidDefinition
from services.journey.graph import Journey
from services.journey.references import check_references
from tests.unit.journey.fixtures import welcome


class KnownReferences:
    """The References protocol over fixed sets, as content and segment would answer."""

    def __init__(self, templates: set[str], segments: set[str]) -> None:
        self.templates = templates
        self.segments = segments

    async def template_exists(self, template_id: str) -> bool:
        return template_id in self.templates

    async def segment_exists(self, segment_id: str) -> bool:
        return segment_id in self.segments


JOURNEY = Journey.parse("jrn_t", 1, welcome())


async def test_known_references_pass() -> None:
    await check_references(JOURNEY, KnownReferences({"tpl_welcome", "tpl_nudge"}, {"seg_new"}))


async def test_an_unknown_template_names_its_send_node() -> None:
    with pytest.raises(InvalidDefinition) as raised:
        await check_references(JOURNEY, KnownReferences({"tpl_welcome"}, {"seg_new"}))
    assert raised.value.path == "nodes.nudge.template_id"


async def test_an_unknown_segment_names_the_entry() -> None:
    with pytest.raises(InvalidDefinition) as raised:
        await check_references(JOURNEY, KnownReferences({"tpl_welcome", "tpl_nudge"}, set()))
    assert raised.value.path == "entry.segment"


async def test_an_unknown_template_of_one_channel_names_its_place_in_the_list() -> None:
    definition = welcome()
    definition["nodes"]["nudge"] = {
        "type": "send",
        "channels": [
            {"channel": "sms", "template_id": "tpl_nudge"},
            {"channel": "push", "template_id": "tpl_push"},
        ],
    }
    journey = Journey.parse("jrn_t", 1, definition)
    references = KnownReferences({"tpl_welcome", "tpl_nudge"}, {"seg_new"})
    with pytest.raises(InvalidDefinition) as raised:
        await check_references(journey, references)
    assert raised.value.path == "nodes.nudge.channels[1].template_id"

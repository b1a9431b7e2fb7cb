"""Template, segment and topic references: unknown ones are refused naming the node or the
entry."""

from __future__ import annotations

import pytest

from services.journey.conditions import InvalidDefinition
from services.journey.graph import Journey
from services.journey.references import check_references
from tests.unit.journey.fixtures import welcome


class KnownReferences:
    """The References protocol over fixed sets, as content and segment would answer."""

    def __init__(
        self, templates: set[str], segments: set[str], topics: set[str] | None = None
    ) -> None:
        self.templates = templates
        self.segments = segments
        self.topics = topics or set()
        self.topics_asked: list[str] = []

    async def template_exists(self, template_id: str) -> bool:
        return template_id in self.templates

    async def segment_exists(self, segment_id: str) -> bool:
        return segment_id in self.segments

    async def topic_exists(self, topic_id: str) -> bool:
        self.topics_asked.append(topic_id)
        return topic_id in self.topics


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


def _with_topics(welcome_topic: str, nudge_topic: str) -> Journey:
    definition = welcome()
    definition["nodes"]["send_welcome"]["topic"] = welcome_topic
    definition["nodes"]["nudge"]["topic"] = nudge_topic
    return Journey.parse("jrn_t", 1, definition)


async def test_an_unknown_topic_names_its_send_node() -> None:
    known = {"tpl_welcome", "tpl_nudge"}
    journey = _with_topics("newsletter", "promotions")
    references = KnownReferences(known, {"seg_new"}, {"newsletter"})
    with pytest.raises(InvalidDefinition) as raised:
        await check_references(journey, references)
    assert raised.value.path == "nodes.nudge.topic"
    assert "promotions" in raised.value.message
    both = KnownReferences(known, {"seg_new"}, {"newsletter", "promotions"})
    await check_references(journey, both)


async def test_a_journey_without_topics_never_asks_for_one() -> None:
    references = KnownReferences({"tpl_welcome", "tpl_nudge"}, {"seg_new"})
    await check_references(JOURNEY, references)
    assert references.topics_asked == []


def test_a_topic_is_a_lowercase_id() -> None:
    definition = welcome()
    definition["nodes"]["nudge"]["topic"] = "Promotions!"
    with pytest.raises(InvalidDefinition) as raised:
        Journey.parse("jrn_t", 1, definition)
    assert raised.value.path == "nodes.nudge.topic"
    sends = _with_topics("newsletter", "promotions").sends()
    assert {send.id: send.topic for send in sends} == {
        "send_welcome": "newsletter",
        "nudge": "promotions",
    }

"""Journey definitions the unit tests build on."""

from __future__ import annotations

import copy
from typing import Any

WELCOME: dict[str, Any] = {
    "entry": {"segment": "seg_new"},
    "start": "send_welcome",
    "nodes": {
        "send_welcome": {
            "type": "send",
            "channel": "email",
            "template_id": "tpl_welcome",
            "next": "wait_click",
        },
        "wait_click": {
            "type": "wait_for",
            "outcome": "clicked",
            "node": "send_welcome",
            "timeout": "P3D",
            "next": "vip_or_not",
            "timeout_next": "nudge",
        },
        "vip_or_not": {
            "type": "branch",
            "branches": [{"condition": {"tag": "vip"}, "next": "tag_engaged"}],
            "default": "done",
        },
        "tag_engaged": {"type": "update_profile", "add_tags": ["engaged"], "next": "done"},
        "nudge": {"type": "send", "channel": "sms", "template_id": "tpl_nudge"},
        "done": {"type": "exit"},
    },
}


def welcome(**changes: Any) -> dict[str, Any]:
    """A deep copy of WELCOME with top-level keys replaced (None removes one)."""
    definition = copy.deepcopy(WELCOME)
    for key, value in changes.items():
        if value is None:
            definition.pop(key, None)
        else:
            definition[key] = value
    return definition


def with_node(node_id: str, node: Any) -> dict[str, Any]:
    definition = welcome()
    definition["nodes"][node_id] = node
    return definition

"""What the services that keep a copy of each profile (journey, segment, content) share about
it: the columns they store, to tell whether a batch changed a copy before writing it back."""

from __future__ import annotations

from typing import Any, Protocol


class ProfileCopy(Protocol):
    """A service's copy of a profile: the facts `profile.updated` changes carry to it."""

    traits: dict[str, Any]
    tags: list[str]
    lifecycle_stage: str | None
    scores: dict[str, Any]


StoredColumns = tuple[dict[str, Any], list[str], str | None, dict[str, Any]]


def stored_columns(copy: ProfileCopy) -> StoredColumns:
    """The stored columns of a copy, copied: the facts change in place (a trait set or removed),
    but what a change puts in is new, so a shallow copy keeps the old values to compare with."""
    return dict(copy.traits), list(copy.tags), copy.lifecycle_stage, dict(copy.scores)

"""What content does with people: the `profile` variable templates see, built from the facts a
request carries (content keeps no copy of profiles), and where a batch's merges and erasures
send the decisions content keyed by profile."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from libs.common.events import ProfileDeleted, ProfileMerged
from libs.common.profiles import ProfileFacts


def profile_variable(facts: ProfileFacts) -> dict[str, Any]:
    """`profile` as templates see it."""
    return {
        "id": facts.profile_id,
        "traits": facts.traits,
        "tags": facts.tags,
        "lifecycle_stage": facts.lifecycle_stage,
        "scores": facts.scores,
        "top_category": facts.top_category,
    }


def decision_moves(
    events: Sequence[ProfileMerged | ProfileDeleted],
) -> tuple[dict[str, str], list[str]]:
    """Where the decisions of each profile go once the merges and erasures apply in order: the
    profiles whose decisions move to a survivor (merged profile → survivor), and those whose
    decisions are erased. A profile erased and then merged into keeps only what the merge gave
    it; decisions merged into a profile that is then erased are erased with it."""
    owners: dict[str, str | None] = {}  # a profile's decisions before the batch → whose now
    for data in events:
        if isinstance(data, ProfileMerged):
            merged = [p for p in data.merged_ids if p != data.survivor_id]
            _hand_over(owners, merged, data.survivor_id)
        else:
            _hand_over(owners, [data.profile_id], None)
    moved = {
        before: after for before, after in owners.items() if after is not None and after != before
    }
    erased = sorted(before for before, after in owners.items() if after is None)
    return moved, erased


def _hand_over(owners: dict[str, str | None], given: Collection[str], to: str | None) -> None:
    for before, owner in owners.items():
        if owner in given:
            owners[before] = to
    for profile_id in given:
        owners.setdefault(profile_id, to)

"""The profile read model every service that keeps a copy of profiles shares (decision 0016)."""

from libs.common.profiles.carried import (
    behaviours_unchunked,
    carried_changes,
    facts_of,
    profiles_named,
    snapshot_of,
)
from libs.common.profiles.facts import (
    ProfileFacts,
    StoredColumns,
    apply_change,
    apply_changes,
    merge_facts,
    normalised_tags,
)
from libs.common.profiles.store import ProfileCopies
from libs.common.profiles.table import profiles_table

__all__ = [
    "ProfileCopies",
    "ProfileFacts",
    "StoredColumns",
    "apply_change",
    "apply_changes",
    "behaviours_unchunked",
    "carried_changes",
    "facts_of",
    "merge_facts",
    "normalised_tags",
    "profiles_named",
    "profiles_table",
    "snapshot_of",
]

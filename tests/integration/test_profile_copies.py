"""Journey's and segment's copies of profiles (libs.common.profiles) in their own schemas: the
copy's facts are what the events say, across changes, merges and erasures; a batch that changes
nothing about a profile does not write its row again."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text

import services.journey
import services.segment
from libs.common.events import (
    BehaviorOccurred,
    EventData,
    ProfileDeleted,
    ProfileMerged,
    ProfileUpdated,
)
from libs.common.profiles import (
    ProfileCopies,
    ProfileFacts,
    apply_changes,
    carried_changes,
    merge_facts,
    profiles_named,
)
from libs.devstack.pytest_plugin import SettingsFactory
from services.segment.rules import ProfileFacts as SegmentFacts
from tests import events as builders
from tests.events import identified, profile_updated
from tests.integration.support import migrated_service_schema

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

NOW = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Service:
    name: str
    migrations: Path
    make: Callable[..., ProfileFacts]  # the facts the service keeps


SERVICES = [
    Service("journey", Path(services.journey.__file__).parent / "migrations", ProfileFacts),
    Service("segment", Path(services.segment.__file__).parent / "migrations", SegmentFacts),
]


@dataclass(frozen=True)
class Copy:
    service: Service
    sessions: Any
    schema: str

    def copies(self, session: Any) -> ProfileCopies[ProfileFacts]:
        return ProfileCopies(session, self.schema, self.service.make)


@pytest_asyncio.fixture(loop_scope="session", params=SERVICES, ids=lambda s: s.name)
async def copy(
    request: pytest.FixtureRequest, settings_factory: SettingsFactory
) -> AsyncIterator[Copy]:
    chosen: Service = request.param
    name = f"{chosen.name}_copies"
    async with migrated_service_schema(settings_factory, name, chosen.migrations) as (
        sessions,
        schema,
    ):
        yield Copy(chosen, sessions, schema)


def behaviour(profile_id: str, **changes: Any) -> BehaviorOccurred:
    """An identify whose call changed these (`traits.plan="premium"` as `**{...}`)."""
    return identified(profile_id, changes=changes, at=NOW, message_id=f"m-{profile_id}").data


def update(profile_id: str, **changes: Any) -> ProfileUpdated:
    return profile_updated(profile_id, changes=changes, at=NOW).data


def merge(survivor: str, *merged: str) -> ProfileMerged:
    return builders.merge(survivor, *merged, at=NOW).data


def erasure(profile_id: str) -> ProfileDeleted:
    return builders.erasure(profile_id, at=NOW, erasure_request_id="era_1").data


async def _take(copy: Copy, events: Sequence[EventData]) -> None:
    """One batch, as segment and journey take one: lock the profiles the events name, apply
    the events in order, drop the merged and erased copies, save the rest."""
    async with copy.sessions() as session, session.begin():
        copies = copy.copies(session)
        profiles = await copies.lock(profiles_named(events))
        gone: list[str] = []
        for data in events:
            if isinstance(data, BehaviorOccurred | ProfileUpdated):
                if (facts := profiles.get(data.profile_id)) is not None:
                    apply_changes(facts, carried_changes(data))
            elif isinstance(data, ProfileMerged):
                merged = [profiles.pop(p) for p in data.merged_ids if p in profiles]
                merge_facts(profiles[data.survivor_id], merged)
                gone += data.merged_ids
            elif isinstance(data, ProfileDeleted):
                profiles.pop(data.profile_id, None)
                gone.append(data.profile_id)
        await copies.delete(gone)
        await copies.save(profiles.values())


async def _stored(copy: Copy, *profile_ids: str) -> dict[str, ProfileFacts]:
    """The copies as stored (without creating those there are none of)."""
    async with copy.sessions() as session, session.begin():
        found = await copy.copies(session).lock_if_free(profile_ids)
    # Compared as the shared facts: segment's memberships and behaviours are not in the copy.
    return {
        p: ProfileFacts(f.profile_id, f.traits, f.tags, f.lifecycle_stage, f.scores, f.top_category)
        for p, f in found.items()
    }


async def test_the_copy_is_what_the_events_say_across_changes_merges_and_erasures(
    copy: Copy,
) -> None:
    await _take(
        copy,
        [
            behaviour(
                "prf_a",
                **{"traits.email": "a@example.com", "tags": ["vip", "vip", 3, "", "tea"]},
            ),
            update(
                "prf_b",
                **{
                    "traits.email": "b@example.com",
                    "traits.phone": "+86100",
                    "scores.rfm": 455,
                    "lifecycle_stage": "active",
                    "features.top_categories": ["oolong", "green"],
                    "features.orders_30d": 3,
                },
            ),
            update("prf_c", **{"traits.plan": "basic", "tags": ["cups"]}),
        ],
    )
    assert await _stored(copy, "prf_a", "prf_b", "prf_c") == {
        "prf_a": ProfileFacts("prf_a", {"email": "a@example.com"}, ["tea", "vip"]),
        "prf_b": ProfileFacts(
            "prf_b",
            {"email": "b@example.com", "phone": "+86100"},
            [],
            "active",
            {"rfm": 455},
            "oolong",
        ),
        "prf_c": ProfileFacts("prf_c", {"plan": "basic"}, ["cups"]),
    }

    # A change, then a merge and an erasure in one batch, then a change to the survivor.
    await _take(
        copy,
        [
            behaviour("prf_b", **{"traits.phone": None, "tags": ["vip"]}),
            merge("prf_a", "prf_b"),
            erasure("prf_c"),
            update("prf_a", **{"scores.churn_risk": 0.2}),
        ],
    )
    assert await _stored(copy, "prf_a", "prf_b", "prf_c") == {
        "prf_a": ProfileFacts(
            "prf_a",
            {"email": "a@example.com"},
            ["tea", "vip"],
            "active",
            {"rfm": 455, "churn_risk": 0.2},
            "oolong",
        )
    }


async def _xmins(copy: Copy) -> dict[str, str]:
    async with copy.sessions() as session:
        rows = await session.execute(
            text(f"SELECT profile_id, xmin::text AS xmin FROM {copy.schema}.profiles")
        )
    return {row.profile_id: row.xmin for row in rows}


async def test_a_profile_is_written_only_when_its_facts_change(copy: Copy) -> None:
    await _take(copy, [update("prf_1", **{"traits.plan": "premium"}), update("prf_2", tags=["a"])])
    created = await _xmins(copy)
    await _take(copy, [behaviour("prf_1"), behaviour("prf_2")])  # they change nothing
    assert await _xmins(copy) == created  # the same transaction ids: not written
    await _take(copy, [update("prf_1", **{"traits.plan": "premium"}), update("prf_2", tags=["a"])])
    assert await _xmins(copy) == created  # the same values
    await _take(
        copy, [update("prf_1", **{"features.top_categories": ["oolong"]}), behaviour("prf_2")]
    )
    changed = await _xmins(copy)
    assert changed["prf_1"] != created["prf_1"] and changed["prf_2"] == created["prf_2"]
    await _take(copy, [update("prf_1", **{"traits.plan": None})])
    assert (await _stored(copy, "prf_1"))["prf_1"] == ProfileFacts("prf_1", top_category="oolong")
    assert (await _xmins(copy))["prf_1"] != changed["prf_1"]


async def test_a_number_beyond_64_bits_is_kept_as_it_is(copy: Copy) -> None:
    # Events carry any JSON number, and the bus decodes them exactly.
    await _take(copy, [behaviour("prf_big", **{"traits.account": 2**70, "scores.ltv": -(2**64)})])
    stored = (await _stored(copy, "prf_big"))["prf_big"]
    assert (stored.traits, stored.scores) == ({"account": 2**70}, {"ltv": -(2**64)})

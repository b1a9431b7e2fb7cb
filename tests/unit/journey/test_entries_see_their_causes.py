"""A segment entry handled before the behaviour that caused it, in one batch, still renders
with the traits that behaviour set (the two topics have no order between them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.bus import Batch
from libs.common.events import (
    BehaviorOccurred,
    Event,
    SegmentEntered,
)
from libs.common.profiles import ProfileFacts
from services.journey.handlers import _entries_see_their_causes
from tests.events import entered, identified

_AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _behaviour(profile_id: str, **traits: Any) -> Event[BehaviorOccurred]:
    message_id = f"msg-{profile_id}-{len(traits)}"
    return identified(profile_id, traits=traits, at=_AT, message_id=message_id)


def _entered(profile_id: str) -> Event[SegmentEntered]:
    return entered(profile_id, "seg_plan", at=_AT)


def _batch(*events: Event[Any]) -> Batch:
    return Batch(events=list(events), session=cast(AsyncSession, None))


def test_an_entry_before_its_behaviour_sees_the_behaviours_traits() -> None:
    profiles = {"prf_1": ProfileFacts("prf_1")}
    _entries_see_their_causes(
        _batch(_entered("prf_1"), _behaviour("prf_1", plan="premium")), profiles
    )
    assert profiles["prf_1"].traits == {"plan": "premium"}


def test_later_changes_win_as_they_would_in_order() -> None:
    profiles = {"prf_1": ProfileFacts("prf_1")}
    batch = _batch(
        _behaviour("prf_1", plan="basic"), _entered("prf_1"), _behaviour("prf_1", plan="premium")
    )
    _entries_see_their_causes(batch, profiles)
    assert profiles["prf_1"].traits == {"plan": "premium"}


def test_a_batch_without_entries_is_left_to_its_order() -> None:
    profiles = {"prf_1": ProfileFacts("prf_1")}
    _entries_see_their_causes(_batch(_behaviour("prf_1", plan="premium")), profiles)
    assert profiles["prf_1"].traits == {}

"""The run book answers as the database would after every earlier change of the batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.journey.engine import Run, RunStatus, Trigger
from services.journey.graph import Journey
from services.journey.runs import RunBook
from tests.unit.journey.fixtures import welcome

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _run(
    journey_id: str, number: int, status: RunStatus = "waiting", profile_id: str = "prf_1"
) -> Run:
    return Run(
        journey_id=journey_id,
        version=1,
        profile_id=profile_id,
        number=number,
        node_id="wait_click",
        status=status,
        entered_at=T0,
        trigger=Trigger("evt_1", T0),
        due_at=T0 + timedelta(days=3) if status == "waiting" else None,
    )


def _journey(**changes: object) -> Journey:
    return Journey.parse("jrn_b", 1, welcome(**changes))


def test_live_runs_come_in_journey_and_run_order() -> None:
    book = RunBook()
    book.add(_run("jrn_b", 2), None)
    book.add(_run("jrn_a", 1, "completed"), None)
    book.add(_run("jrn_a", 3), None)
    book.add(_run("jrn_b", 1, "exited"), None)

    assert [(r.journey_id, r.number) for r in book.live("prf_1")] == [("jrn_a", 3), ("jrn_b", 2)]
    assert book.live("prf_other") == []


def test_a_saved_run_is_seen_by_later_questions() -> None:
    book = RunBook()
    waiting = _run("jrn_b", 1)
    book.add(waiting, None)
    waiting.status = "exited"
    book.save(waiting, _journey())
    entered = _run("jrn_b", 2, "active")
    book.save(entered, _journey())

    assert book.live("prf_1") == [entered]
    assert book.latest("jrn_b", "prf_1") is entered
    assert book.latest("jrn_a", "prf_1") is None
    assert waiting.due_at is None  # an ended run keeps no timer
    assert [saved.run for saved in book.take_changed()] == [waiting, entered]
    assert book.take_changed() == []


def test_goal_window_follows_the_goal_of_the_version_entered() -> None:
    book = RunBook()
    goal = {"event": "order_completed", "within": "P7D", "exit": True}
    run = _run("jrn_b", 1, "active")
    book.save(run, _journey(goal=goal))

    assert book.in_goal_window("prf_1", T0 + timedelta(days=6)) == [run]
    assert book.in_goal_window("prf_1", T0 + timedelta(days=8)) == []
    assert book.in_goal_window("prf_1", T0 - timedelta(seconds=1)) == []
    run.goal_reached_at = T0
    assert book.in_goal_window("prf_1", T0 + timedelta(days=1)) == []


def test_forgotten_profiles_lose_their_unsaved_changes() -> None:
    book = RunBook()
    book.save(_run("jrn_b", 1, profile_id="prf_gone"), _journey())
    kept = _run("jrn_b", 1, profile_id="prf_kept")
    book.save(kept, _journey())

    book.forget({"prf_gone"})

    assert book.live("prf_gone") == []
    assert [saved.run for saved in book.take_changed()] == [kept]


def test_a_journey_versions_runs_include_finished_ones_for_fallbacks() -> None:
    book = RunBook()
    completed = _run("jrn_b", 1, "completed")
    waiting = _run("jrn_b", 2)
    book.add(waiting, None)
    book.add(completed, None)
    book.add(_run("jrn_a", 1), None)

    assert book.of_journey("prf_1", "jrn_b", 1) == [completed, waiting]
    assert book.of_journey("prf_1", "jrn_b", 2) == []

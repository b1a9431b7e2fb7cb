"""The runs of one transaction's profiles in memory: loaded in one query, saved in bulk.

The handler and the timer worker answer "which runs are live", "which count for a goal" and
"what was the latest run" from here, as the database would after every earlier change of the
batch, and write the runs they changed once at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.journey.engine import LIVE, Run, goal_deadline
from services.journey.graph import Journey

RunKey = tuple[str, str, int]
"""(journey_id, profile_id, run number): a run's primary key."""


@dataclass(frozen=True)
class SavedRun:
    """A run to write, with until when a goal counts for it (fixed when it entered)."""

    run: Run
    goal_until: datetime | None

    @property
    def has_timer(self) -> bool:
        return self.run.status in ("waiting", "held") and self.run.due_at is not None


class RunBook:
    """Runs by profile as they stand in this transaction, and those changed since loading."""

    def __init__(self) -> None:
        self._runs: dict[str, dict[tuple[str, int], SavedRun]] = {}
        self._changed: dict[RunKey, SavedRun] = {}

    def add(self, run: Run, goal_until: datetime | None) -> None:
        """A run as loaded from the database."""
        self._runs.setdefault(run.profile_id, {})[run.journey_id, run.number] = SavedRun(
            run, goal_until
        )

    def live(self, profile_id: str) -> list[Run]:
        """The profile's live runs in (journey, run) order."""
        return [run for run in self._ordered(profile_id) if run.status in LIVE]

    def of_journey(self, profile_id: str, journey_id: str, version: int) -> list[Run]:
        """The profile's loaded runs of one journey version, live or not, in run order."""
        return [
            run
            for run in self._ordered(profile_id)
            if (run.journey_id, run.version) == (journey_id, version)
        ]

    def in_goal_window(self, profile_id: str, at: datetime) -> list[Run]:
        """Runs whose goal window holds this moment and whose goal is not reached yet."""
        return [
            saved.run
            for saved in self._ordered_saved(profile_id)
            if saved.run.goal_reached_at is None
            and saved.run.entered_at <= at
            and (saved.goal_until is None or saved.goal_until >= at)
        ]

    def latest(self, journey_id: str, profile_id: str) -> Run | None:
        """The profile's run of this journey with the highest number (any version)."""
        runs = [
            saved.run
            for (journey, _), saved in self._runs.get(profile_id, {}).items()
            if journey == journey_id
        ]
        return max(runs, key=lambda run: run.number) if runs else None

    def save(self, run: Run, journey: Journey) -> None:
        """Keep the run as changed; only a waiting (or held) run keeps its timer."""
        if run.status not in ("waiting", "held"):
            run.due_at = None
        runs = self._runs.setdefault(run.profile_id, {})
        saved = runs.get((run.journey_id, run.number))
        if saved is None or saved.run is not run:
            saved = SavedRun(run, goal_deadline(journey, run.entered_at))
            runs[run.journey_id, run.number] = saved
        self._changed[run.journey_id, run.profile_id, run.number] = saved

    def forget(self, profile_ids: set[str]) -> None:
        """Drop these profiles' runs, changed or not (erased, or to be loaded again)."""
        for profile_id in profile_ids:
            self._runs.pop(profile_id, None)
        self._changed = {
            key: saved for key, saved in self._changed.items() if key[1] not in profile_ids
        }

    def take_changed(self) -> list[SavedRun]:
        """The runs changed since the last call, in key order (rows locked in one order)."""
        changed, self._changed = self._changed, {}
        return [changed[key] for key in sorted(changed)]

    def _ordered_saved(self, profile_id: str) -> list[SavedRun]:
        runs = self._runs.get(profile_id)
        if not runs:
            return []
        return [runs[key] for key in sorted(runs)]

    def _ordered(self, profile_id: str) -> list[Run]:
        return [saved.run for saved in self._ordered_saved(profile_id)]

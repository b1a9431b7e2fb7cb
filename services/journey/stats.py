"""A journey's stats: its counters and waiting runs, per node, per version and in total."""

from __future__ import annotations

from collections.abc import Iterable

from services.journey.engine import JOURNEY, OUTCOME_COUNTER
from services.journey.schemas import NodeStats, StatsResponse, Totals, VersionStats
from services.journey.store import StatRow

_NODE_COUNTERS = (
    "entered",
    "waiting",
    "completed",
    "exited",
    "goal_reached",
    "matched",
    "timed_out",
    "fallbacks",
    "unreachable",
)
_JOURNEY_COUNTERS = ("entered", "completed", "exited", "goal_reached")


def journey_stats(journey_id: str, rows: Iterable[StatRow]) -> StatsResponse:
    versions: dict[int, VersionStats] = {}
    total = Totals()
    nodes: dict[str, NodeStats] = {}
    for row in rows:
        version = versions.setdefault(row.version, VersionStats(version=row.version))
        if row.node_id == JOURNEY:
            _add_totals(version, row)
            _add_totals(total, row)
            continue
        _add_node(version.nodes.setdefault(row.node_id, NodeStats()), row)
        _add_node(nodes.setdefault(row.node_id, NodeStats()), row)
        if row.counter == "waiting":
            version.in_progress += row.value
            total.in_progress += row.value
    return StatsResponse(
        journey_id=journey_id,
        total=total,
        nodes=nodes,
        versions=[versions[v] for v in sorted(versions)],
    )


def _add_totals(totals: Totals, row: StatRow) -> None:
    if row.counter in _JOURNEY_COUNTERS:
        setattr(totals, row.counter, getattr(totals, row.counter) + row.value)


def _add_node(node: NodeStats, row: StatRow) -> None:
    if row.counter.startswith("arm:"):
        arm = row.counter[len("arm:") :]
        node.arms[arm] = node.arms.get(arm, 0) + row.value
    elif row.counter.startswith(OUTCOME_COUNTER):
        outcome = row.counter.removeprefix(OUTCOME_COUNTER)
        node.outcomes[outcome] = node.outcomes.get(outcome, 0) + row.value
    elif row.counter in _NODE_COUNTERS:
        setattr(node, row.counter, getattr(node, row.counter) + row.value)

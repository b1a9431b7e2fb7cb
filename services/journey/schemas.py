"""The journey REST API's request and response models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    NaiveDatetime,
    StringConstraints,
)

from services.journey.conditions import InvalidDefinition
from services.journey.graph import MAX_PER_MINUTE, check_json

JOURNEY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
JourneyId = Annotated[str, StringConstraints(pattern=JOURNEY_ID_PATTERN)]
GRAPH_FIELDS = ("entry", "reentry", "exit", "goal", "contact", "start", "nodes")


def _storable(value: str) -> str:
    try:
        check_json(value, "")
    except InvalidDefinition as error:
        raise ValueError(error.message) from None
    return value


Text = Annotated[str, AfterValidator(_storable)]


class JourneyGraph(BaseModel):
    """A journey's graph alone: what `POST /journeys/validate` checks without storing it."""

    model_config = ConfigDict(extra="forbid")

    entry: Any = Field(
        default=None,
        description='`{"segment": "<segment id>"}` or `{"event": "<name>", "where": [filters]}`.',
    )
    reentry: Any = Field(
        default=None, description='`{"rule": "never" | "always" | "after", "cooldown": "P7D"}`.'
    )
    exit: Any = Field(
        default=None, description='`{"condition": <condition>, "on_segment_exit": true}`.'
    )
    goal: Any = Field(
        default=None,
        description='`{"event": "<name>", "where": [...], "within": "P7D", "exit": true}`.',
    )
    contact: Any = Field(
        default=None,
        description='`{"priority": 0-100, "on_conflict": "drop" | "defer"}` or '
        '`{"transactional": true}`: the contact policy\'s rule for its messages.',
    )
    start: Any = Field(default=None, description="The id of the first node.")
    nodes: Any = Field(default=None, description="The nodes, keyed by their id (docs/journey.md).")

    def graph(self) -> dict[str, Any]:
        """The versioned part: what publishing freezes."""
        return {
            name: getattr(self, name) for name in GRAPH_FIELDS if getattr(self, name) is not None
        }


class JourneyRequest(JourneyGraph):
    """A journey to create (POST) or its new draft (PUT): metadata plus the graph."""

    id: JourneyId | None = Field(
        default=None, description="Chosen by the caller on create; generated when absent."
    )
    name: Annotated[Text, StringConstraints(min_length=1, max_length=255)]
    description: Annotated[Text, StringConstraints(max_length=10_000)] = ""


class GraphCheck(BaseModel):
    valid: bool = Field(description="Always true: a graph that is not valid is a 422.")
    nodes: int = Field(description="How many nodes the graph has.")


class VersionResponse(BaseModel):
    version: int
    published_at: datetime
    definition: Any


class JourneyResponse(BaseModel):
    id: str
    name: str
    description: str
    status: str = Field(description="`draft` (never published), `active` or `paused`.")
    published_version: int | None = Field(description="The version new profiles enter.")
    draft: Any = Field(description="The graph as last saved; publishing freezes it as a version.")
    versions: list[VersionResponse] | None = Field(
        default=None, description="Every published version (on GET /journeys/{id} and publish)."
    )
    created_at: datetime
    updated_at: datetime


class JourneyList(BaseModel):
    journeys: list[JourneyResponse]


class NodeStats(BaseModel):
    entered: int = Field(default=0, description="Runs that reached the node.")
    waiting: int = Field(default=0, description="Runs at the node now (waiting or held).")
    completed: int = Field(default=0, description="Runs that went on from the node.")
    exited: int = Field(default=0, description="Runs that left the journey at the node.")
    goal_reached: int = Field(default=0, description="Runs at the node when they met the goal.")
    matched: int = Field(default=0, description="wait_for: the awaited event came.")
    timed_out: int = Field(default=0, description="wait_for: the timeout came first.")
    fallbacks: int = Field(
        default=0,
        description="send on several channels: requests for the next channel after one could "
        "not be delivered.",
    )
    unreachable: int = Field(
        default=0,
        description="send on several channels: runs with an address for none of them (nothing "
        "was requested).",
    )
    arms: dict[str, int] = Field(default_factory=dict, description="split: runs per arm.")
    outcomes: dict[str, int] = Field(
        default_factory=dict,
        description="send: the outcomes dispatch reported for its messages, by kind (`sent`, "
        "`delivered`, `opened`, `clicked`, `failed`, `suppressed`, `unsubscribed`, and "
        "`deferred`: each time dispatch put one off, to decide it again).",
    )


class Totals(BaseModel):
    entered: int = 0
    in_progress: int = Field(default=0, description="Runs waiting or held now.")
    completed: int = 0
    exited: int = 0
    goal_reached: int = 0


class VersionStats(Totals):
    version: int
    nodes: dict[str, NodeStats] = Field(default_factory=dict)


class StatsResponse(BaseModel):
    journey_id: str
    total: Totals
    nodes: dict[str, NodeStats] = Field(description="Per node, all versions added up.")
    versions: list[VersionStats]


class DecisionResponse(BaseModel):
    """A learned decision, with its probability under the policy (for offline evaluation)."""

    kind: str = Field(description="`send_time` (a best-time wait or send) or `channel`.")
    profile_id: str
    run: int
    version: int
    node_id: str
    decided_at: datetime
    explored: bool = Field(description="Chosen uniformly at random rather than as the best.")
    probability: float = Field(description="The policy's probability of this choice.")
    channel: str = Field(description="send_time: the channel it timed; channel: the one chosen.")
    hour: int | None = Field(default=None, description="send_time: the local hour chosen.")
    wake_at: datetime | None = Field(default=None, description="send_time: when the wait ends.")
    ranking: list[str] = Field(
        default_factory=list, description="channel: the chosen channel, then the fallbacks."
    )
    probabilities: dict[str, float] = Field(
        default_factory=dict, description="channel: each eligible channel's probability."
    )
    request_id: str | None = Field(default=None, description="channel: the request made.")


class DecisionList(BaseModel):
    decisions: list[DecisionResponse] = Field(description="Newest first.")


ENTITY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
EntityId = Annotated[str, StringConstraints(pattern=ENTITY_ID_PATTERN)]
Channel = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class RepeatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    every: str | None = Field(
        default=None, description="ISO 8601 duration between occurrences: `P1D`, `PT12H`."
    )
    cron: str | None = Field(
        default=None,
        description="Instead of `every`: five cron fields, minute hour day-of-month month "
        "day-of-week (`0 10 * * MON`), matched from the start on: on each person's clock with "
        "`at_local_time`, else on the UTC clock.",
    )
    times: int = Field(ge=2, le=1000, description="How many occurrences, the first included.")


class BestTimeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    within: str = Field(
        description="ISO 8601 duration of at most PT48H: each person is sent to at their best "
        "hour on the channel within this window from the occurrence's time."
    )


class BroadcastRequest(BaseModel):
    """A send of one template on one channel to a segment's members, taken at send time."""

    model_config = ConfigDict(extra="forbid")

    id: JourneyId | None = Field(
        default=None, description="Chosen by the caller; generated when absent."
    )
    name: Annotated[Text, StringConstraints(min_length=1, max_length=255)]
    description: Annotated[Text, StringConstraints(max_length=10_000)] = ""
    segment: EntityId = Field(description="The segment whose members are sent to.")
    channel: Channel
    template_id: EntityId
    variables: dict[str, Any] = Field(default_factory=dict, description="Template variables.")
    at: AwareDatetime | None = Field(
        default=None,
        description="When to send, with its UTC offset; absent (and no `at_local_time`): now.",
    )
    at_local_time: NaiveDatetime | None = Field(
        default=None,
        description="A wall time without offset (`2026-03-14T10:00:00`): each person is sent "
        "to when their own clock shows it (`traits.timezone`; UTC when absent or unknown).",
    )
    at_best_time: BestTimeRequest | None = Field(
        default=None,
        description="Each person at their best hour (the send-time model's) within `within` "
        "of `at` (or now); not with `at_local_time`.",
    )
    per_minute: int | None = Field(
        default=None,
        ge=1,
        le=MAX_PER_MINUTE,
        description="Sends a minute at most (CLOSELOOP_JOURNEY_ENTRY_PER_MINUTE when absent).",
    )
    repeat: RepeatRequest | None = Field(
        default=None,
        description="A recurring broadcast: every `every` or at each `cron` time, `times` "
        "occurrences.",
    )
    topic: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")] | None = Field(
        default=None,
        description="The subscription topic it belongs to (dispatch's `/topics`): people "
        "unsubscribed from it on the channel are not sent to.",
    )
    contact: dict[str, Any] | None = Field(
        default=None,
        description="The contact policy's rule for its messages: `priority` (0 to 100, 50 when "
        'absent), `on_conflict` (`drop` or `defer`), or `{"transactional": true}`.',
    )


class BroadcastProgress(BaseModel):
    planned: int = Field(description="Members entered, each due at their turn.")
    entered: int = Field(description="Members whose turn came and who reached the send.")
    requested: int = Field(description="Messages requested (content renders, dispatch sends).")
    sent: int = Field(description="Messages dispatch reported sent.")
    suppressed: int = Field(description="Messages dispatch held back: consent, caps, quiet hours.")
    failed: int = Field(description="Messages dispatch could not send.")
    deferred: int = Field(
        description="Deferrals dispatch reported: messages put off by quiet hours, or by a cap "
        "another message won, to be decided again (one put off twice counts twice).",
    )
    waiting: int = Field(description="Members still to be sent to (or held while paused).")
    exited: int = Field(description="Members not sent to: cancelled, or left the segment.")


class OccurrenceResponse(BaseModel):
    occurrence: int
    at: datetime | None = Field(description="The instant, for a send at a fixed time.")
    at_local_time: datetime | None = Field(description="The wall time, at each person's clock.")
    status: str = Field(description="`pending` (members still to take), `done` or `cancelled`.")
    started_at: datetime | None = Field(description="When its members were first taken.")
    planned: int = Field(description="Members it entered.")


class BroadcastResponse(BaseModel):
    id: str
    name: str
    description: str
    status: str = Field(description="`scheduled`, `sending`, `done`, `paused` or `cancelled`.")
    segment: str
    channel: str
    template_id: str
    variables: dict[str, Any]
    at: datetime | None
    at_local_time: datetime | None
    at_best_time: dict[str, Any] | None = Field(description="`within`, an ISO 8601 duration.")
    per_minute: int
    repeat: dict[str, Any] | None = Field(
        description="`every` (seconds) or `cron` (the expression), and `times`."
    )
    topic: str | None = Field(default=None, description="Its subscription topic, if any.")
    contact: dict[str, Any] | None = Field(
        default=None, description="The contact rule its messages carry, as given."
    )
    progress: BroadcastProgress
    occurrences: list[OccurrenceResponse]
    created_at: datetime
    updated_at: datetime


class BroadcastList(BaseModel):
    broadcasts: list[BroadcastResponse]


DryRunDays = Annotated[
    int, Field(ge=1, le=365, description="How many days of behaviour to replay, up to now.")
]


class DryRunRequest(BaseModel):
    """A journey's draft replayed over the last `days` of behaviour and today's profiles."""

    model_config = ConfigDict(extra="forbid")

    days: DryRunDays


class BroadcastDryRunRequest(BaseModel):
    """A broadcast judged as if sent at `at` (absent: now) to its segment's members today (it
    has no node that waits for behaviour, so no days are replayed)."""

    model_config = ConfigDict(extra="forbid")

    segment: EntityId = Field(description="The segment whose members would be sent to.")
    channel: Channel
    template_id: EntityId
    variables: dict[str, Any] = Field(default_factory=dict, description="Template variables.")
    at: AwareDatetime | None = Field(
        default=None,
        description="When it would be sent, with its UTC offset, within a year of now; "
        "absent: now.",
    )
    topic: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")] | None = Field(
        default=None,
        description="The subscription topic it would belong to: members unsubscribed from it "
        "on the channel count as suppressed.",
    )


class DryRunMessages(BaseModel):
    sent: int = Field(description="Messages dispatch's policy would let through.")
    suppressed: int = Field(description="Messages it would hold back: consent, unsubscribed, caps.")


class DryRunPath(BaseModel):
    nodes: list[str] = Field(description="The nodes a run reached, in order.")
    runs: int


class DryRunResponse(BaseModel):
    journey_id: str
    version: int = Field(description="The version the draft would be published as.")
    since: datetime = Field(description="The start of the replayed days.")
    until: datetime = Field(description="Where the replay stops (now, or a broadcast's time).")
    people: int = Field(
        description="Profiles replayed: the entry segment's members today, or "
        "everyone with a behaviour of the replayed days (event entry)."
    )
    behaviours: int = Field(description="Behaviours replayed.")
    behaviours_truncated: bool = Field(
        description="Segment had more behaviours than CLOSELOOP_JOURNEY_DRY_RUN_BEHAVIOUR_LIMIT."
    )
    entries: int = Field(description="Runs started.")
    sends: dict[str, dict[str, DryRunMessages]] = Field(
        description="Messages asked for, by send node and channel."
    )
    policy: dict[str, int] = Field(
        description="Messages held back, by reason: `consent`, `unsubscribed`, `frequency_cap` "
        "(suppressed), `quiet_hours` (deferred until they end, then judged again)."
    )
    total: dict[str, int] = Field(
        description="The runs' counters as the journey's stats count them: `entered`, "
        "`completed`, `exited`, `goal_reached`; and `in_progress`, still waiting at the end."
    )
    nodes: dict[str, dict[str, int]] = Field(
        description="Counters per node as the journey's stats count them (`entered`, "
        "`completed`, `exited`, `matched`, `timed_out`, `arm:<name>`, `fallbacks`...)."
    )
    paths: list[DryRunPath] = Field(description="The most common paths, most runs first.")


class ProfileRun(BaseModel):
    """One run of a person through a journey."""

    journey_id: str
    journey_name: str
    run: int = Field(description="1 for the person's first entry into the journey, and so on.")
    version: int = Field(description="The journey version the run follows.")
    node_id: str | None = Field(description="Where the run is or left; null once completed.")
    status: str = Field(description="waiting, held, completed or exited.")
    entered_at: datetime
    updated_at: datetime
    exit_reason: str | None
    goal_reached_at: datetime | None


class ProfileRuns(BaseModel):
    profile_id: str
    runs: list[ProfileRun] = Field(description="The latest entry first.")

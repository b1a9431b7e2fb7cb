"""A dry run: a journey replayed over today's profiles and the last days of behaviour.

The engine's own steps move each person (`engine.advance`, `leave_wait`, `fall_back`...), at the
times the behaviours happened and the timers would fire; each message it asks for is judged by
the contact policy dispatch applies (`libs.common.contact_policy.decide`), against that person's
messages of the replay. Pure: nothing is stored, requested or sent.

People without a behaviour of the replayed days who look the same to every step (their zone,
what each condition says of them, which channels reach them, their consent, their split arms)
move the same way: one of them is replayed for all (a cohort), so 100,000 members take
seconds. Learned steps decide by the population's prior without exploring, so that they too
are the same for a cohort.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from libs.common.consent import trait_answers
from libs.common.contact_policy import (
    NO_TRAIT_ANSWERS,
    Preferences,
    SendPolicy,
    TopicRule,
    TraitAnswers,
    decide,
    profile_zone,
)
from libs.common.profiles import ProfileFacts
from services.journey.conditions import Condition, Context, Group, Leaf, holds
from services.journey.engine import (
    JOURNEY,
    Run,
    SendStep,
    Steps,
    Trigger,
    choose_arm,
    enter,
    entry_matches,
    fall_back,
    goal_deadline,
    leave_wait,
    may_enter,
    reach_goal,
    reaches_goal,
    undeliverable,
    waits_for_event,
    waits_for_outcome,
)
from services.journey.engine import advance as advance_run
from services.journey.graph import Branch, Journey, Send, Split, WaitFor
from services.journey.learning import Learning, Priors

TOP_PATHS = 10
# A message deferred by quiet hours is judged again when they end; a policy whose quiet hours
# cover the whole day for a channel would defer it for ever.
_MAX_DEFERRALS = 3
_PRIOR_ONLY = Learning(Priors(), {}, explore_share=0.0)


@dataclass(frozen=True)
class Behaviour:
    """One behaviour of the replayed days, as segment keeps it."""

    profile_id: str
    event: str
    occurred_at: datetime
    properties: dict[str, Any]


@dataclass(frozen=True)
class TemplateRule:
    """What a template adds to how dispatch decides its messages, as content gave it: its
    subscription topic (the message's when the send names none) and whether its messages are
    transactional."""

    topic: str | None = None
    transactional: bool = False


_NO_TEMPLATE_RULE = TemplateRule()


@dataclass(frozen=True)
class ContactRules:
    """Dispatch's caps and quiet hours, its subscription topics and each person's consent and
    topic answers, as dispatch gave them; the journey's templates' rules, as content gave them."""

    policy: SendPolicy
    preferences: Mapping[str, Preferences]
    default_consent: bool
    topics: Mapping[str, TopicRule] = field(default_factory=dict)
    templates: Mapping[str, TemplateRule] = field(default_factory=dict)

    def topic_of(self, topic_id: str | None) -> TopicRule | None:
        """The topic as dispatch decides it; one it no longer has is decided by the answers
        recorded for it, opt-out."""
        if topic_id is None:
            return None
        return self.topics.get(topic_id) or TopicRule(topic_id)


@dataclass(frozen=True)
class Person:
    """Who is replayed: today's facts, when they enter as a member of the entry segment (None:
    only by a behaviour) and their behaviours of the replayed days, oldest first."""

    facts: ProfileFacts
    joined_at: datetime | None
    behaviours: Sequence[Behaviour] = ()


@dataclass
class DryRunReport:
    """What the replay would have done."""

    people: int = 0
    entries: int = 0
    in_progress: int = 0
    """Runs still waiting at the end of the replay."""
    messages: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(send node, channel, `sent` or `suppressed`) → messages."""
    policy: Counter[str] = field(default_factory=Counter)
    """Messages held back, by reason: `consent`, `unsubscribed`, `frequency_cap` (suppressed),
    `quiet_hours` (deferred until they end, then judged again)."""
    paths: Counter[tuple[str, ...]] = field(default_factory=Counter)
    """The nodes each run reached, in order → runs."""
    counters: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(node id, counter) as the journey's stats count them (`""`: the journey's own)."""

    def top_paths(self, limit: int = TOP_PATHS) -> list[tuple[tuple[str, ...], int]]:
        return sorted(self.paths.items(), key=lambda item: (-item[1], item[0]))[:limit]

    def add(self, other: DryRunReport, times: int) -> None:
        """Count `other` (a cohort's one replay) `times` over."""
        self.people += other.people * times
        self.entries += other.entries * times
        self.in_progress += other.in_progress * times
        _add(self.messages, other.messages, times)
        _add(self.policy, other.policy, times)
        _add(self.paths, other.paths, times)
        _add(self.counters, other.counters, times)


def _add(mine: Counter[Any], theirs: Counter[Any], times: int) -> None:
    for key, count in theirs.items():
        mine[key] += count * times


@dataclass
class _Walk(Steps):
    """The engine's steps, also noting the nodes the current run reaches."""

    path: list[str] = field(default_factory=list)

    def count(self, run: Run, node_id: str, counter: str) -> None:
        super().count(run, node_id, counter)
        if counter == "entered" and node_id != JOURNEY:
            self.path.append(node_id)


def dry_run(
    journey: Journey,
    people: Iterable[Person],
    rules: ContactRules,
    until: datetime,
    *,
    step_limit: int,
    cohorts: bool = True,
) -> DryRunReport:
    """Replay every person through the journey up to `until` (without `cohorts`, each alone)."""
    report = DryRunReport()
    walk = _Walk()
    reads = _Reads.of(journey)
    alike: dict[Hashable, tuple[Person, int]] = {}
    for person in people:
        key = reads.cohort(journey, person, rules) if cohorts else None
        if key is None:
            _Replay(journey, person, rules, report, walk, step_limit).replay(until)
        else:
            first, size = alike.get(key, (person, 0))
            alike[key] = (first, size + 1)
    _fold(walk, report)
    for first, size in alike.values():
        one, its_walk = DryRunReport(), _Walk()
        _Replay(journey, first, rules, one, its_walk, step_limit).replay(until)
        _fold(its_walk, one)
        report.add(one, size)
    return report


def _fold(walk: _Walk, report: DryRunReport) -> None:
    for (_, _, node_id, counter), count in walk.counters.items():
        report.counters[(node_id, counter)] += count


@dataclass(frozen=True)
class _Reads:
    """What of a person the journey's steps read, besides their behaviours: the leaves of its
    conditions (branches, exit), the channels of its sends on several channels (reached or
    not), its splits (the arm a person's first run draws)."""

    leaves: tuple[Leaf, ...]
    channels: tuple[str, ...]
    splits: tuple[Split, ...]

    @classmethod
    def of(cls, journey: Journey) -> _Reads:
        conditions = [
            path.condition
            for node in journey.nodes.values()
            if isinstance(node, Branch)
            for path in node.paths
        ]
        if journey.exit.condition is not None:
            conditions.append(journey.exit.condition)
        channels = {
            channel
            for node in journey.nodes.values()
            if isinstance(node, Send) and node.chooses_channel
            for channel in node.channels
        }
        return cls(
            tuple(leaf for condition in conditions for leaf in _leaves(condition)),
            tuple(sorted(channels)),
            tuple(node for node in journey.nodes.values() if isinstance(node, Split)),
        )

    def cohort(self, journey: Journey, person: Person, rules: ContactRules) -> Hashable | None:
        """What the person looks like to every step; None when they must be replayed alone
        (they have behaviours, or enter only by one)."""
        if person.behaviours or person.joined_at is None:
            return None
        facts = person.facts
        context = Context(facts, {})
        preferences = rules.preferences.get(facts.profile_id)
        first_run = Run(
            journey.id,
            journey.version,
            facts.profile_id,
            1,
            None,
            "active",
            person.joined_at,
            Trigger(None, person.joined_at),
        )
        return (
            person.joined_at,
            facts.timezone,
            tuple(holds(leaf, context) for leaf in self.leaves),
            tuple(facts.can_reach(channel) for channel in self.channels),
            None if preferences is None else _preferences_key(preferences),
            _traits_key(trait_answers(facts.traits)),
            tuple(choose_arm(split, first_run).name for split in self.splits),
        )


def _preferences_key(preferences: Preferences) -> Hashable:
    return (
        tuple(sorted(preferences.consent.items())),
        tuple(sorted(preferences.unsubscribed)),
        _answers_key(preferences.topics),
    )


def _traits_key(traits: TraitAnswers) -> Hashable:
    if traits is NO_TRAIT_ANSWERS:
        return None
    return tuple(sorted(traits.consent.items())), _answers_key(traits.subscriptions)


def _answers_key(answers: Mapping[str, Mapping[str, bool]]) -> Hashable:
    return tuple(
        sorted((topic, tuple(sorted(by_channel.items()))) for topic, by_channel in answers.items())
    )


def _leaves(condition: Condition) -> Iterator[Leaf]:
    if isinstance(condition, Group):
        for child in condition.children:
            yield from _leaves(child)
    else:
        yield condition


class _Replay:
    """One person's runs of the journey, in event time."""

    def __init__(
        self,
        journey: Journey,
        person: Person,
        rules: ContactRules,
        report: DryRunReport,
        walk: _Walk,
        step_limit: int,
    ) -> None:
        self._journey = journey
        self._person = person
        self._facts = person.facts
        self._traits = trait_answers(person.facts.traits)
        self._rules = rules
        self._report = report
        self._walk = walk
        self._step_limit = step_limit
        self._run: Run | None = None
        self._sent: list[tuple[str, datetime]] = []
        self._outcomes: dict[str, tuple[str, datetime]] = {}

    def replay(self, until: datetime) -> None:
        self._report.people += 1
        joined_at = self._person.joined_at
        for behaviour in self._person.behaviours:
            if joined_at is not None and joined_at <= behaviour.occurred_at:
                self._enter(Trigger(None, joined_at))
                joined_at = None
            self._behaviour(behaviour)
        if joined_at is not None and joined_at <= until:
            self._enter(Trigger(None, joined_at))
        self._wake_until(until)
        if self._run is not None and self._run.live:
            self._report.in_progress += 1
        self._end_path()

    def _behaviour(self, behaviour: Behaviour) -> None:
        """In the handler's order: wait_for nodes, then goals, then entry."""
        at, event, properties = behaviour.occurred_at, behaviour.event, behaviour.properties
        self._wake_until(at)
        trigger = Trigger(None, at, event, properties)
        run = self._run
        if run is not None and waits_for_event(self._journey, run, event, properties):
            leave_wait(self._journey, run, self._walk, "matched")
            run.trigger = trigger
            self._advance(run, at)
        deadline = None if run is None else goal_deadline(self._journey, run.entered_at)
        if (
            run is not None
            and (deadline is None or deadline >= at)
            and reaches_goal(self._journey, run, event, properties)
        ):
            reach_goal(self._journey, run, at, self._walk)
        if entry_matches(self._journey, event, properties):
            self._enter(trigger)

    def _enter(self, trigger: Trigger) -> None:
        if not may_enter(self._journey, self._run, trigger.occurred_at):
            return
        self._end_path()
        number = self._run.number + 1 if self._run is not None else 1
        self._run = enter(self._journey, self._facts.profile_id, number, trigger, self._walk)
        self._report.entries += 1
        self._advance(self._run, trigger.occurred_at)

    def _wake_until(self, moment: datetime) -> None:
        """Fire the run's timers due by `moment`, each at its own time."""
        run = self._run
        while run is not None and run.status == "waiting" and run.due_at is not None:
            due_at = run.due_at
            if due_at > moment:
                return
            assert run.node_id is not None
            waiting_for = self._journey.nodes[run.node_id]
            outcome = "timed_out" if isinstance(waiting_for, WaitFor) else "fired"
            leave_wait(self._journey, run, self._walk, outcome)
            self._advance(run, due_at)

    def _advance(self, run: Run, at: datetime) -> None:
        advance_run(
            self._journey,
            run,
            self._facts,
            at,
            self._walk,
            paused=False,
            step_limit=self._step_limit,
            learning=_PRIOR_ONLY,
        )
        answered_at = self._judge_sends(at)
        self._walk.updates.clear()  # profile changes are not applied: today's facts stand
        self._walk.decisions.clear()
        if answered_at is not None:
            self._answer_outcome_wait(run, answered_at)

    def _judge_sends(self, at: datetime) -> datetime | None:
        """Judge every message the step asked for (and the fallbacks they lead to); when the
        last was decided (a deferred one: when quiet hours end), None if there was none."""
        decided_at = None
        sends = self._walk.sends
        while sends:
            run, step = sends.pop(0)
            outcome, reason, decided_at = self._judge(step, at)
            self._outcomes[step.request_id] = (outcome, decided_at)
            if undeliverable(outcome, reason=reason, retryable=None):
                fall_back(
                    self._journey, run, self._facts, step.node.id, step.request_id, self._walk
                )
        return decided_at

    def _judge(self, step: SendStep, at: datetime) -> tuple[str, str | None, datetime]:
        channel = step.option.channel
        contact = self._journey.contact
        template = self._rules.templates.get(step.option.template_id, _NO_TEMPLATE_RULE)
        if (contact is not None and contact.transactional) or template.transactional:
            # Dispatch sends a transactional message whatever the policy says, uncounted.
            self._report.messages[(step.node.id, channel, "sent")] += 1
            return "sent", None, at
        preferences = self._rules.preferences.get(self._facts.profile_id, Preferences())
        zone = profile_zone(self._facts.timezone)
        for _ in range(_MAX_DEFERRALS):
            decision = decide(
                channel,
                at,
                preferences=preferences,
                policy=self._rules.policy,
                sent=self._sent,
                zone=zone,
                default_consent=self._rules.default_consent,
                traits=self._traits,
                # The send's topic, else its template's, as content names the message's.
                topic=self._rules.topic_of(step.node.topic or template.topic),
            )
            if decision.action != "defer":
                break
            self._report.policy["quiet_hours"] += 1
            assert decision.until is not None
            at = decision.until
        if decision.action == "send":
            self._sent.append((channel, at))
            self._report.messages[(step.node.id, channel, "sent")] += 1
            return "sent", None, at
        reason = decision.reason or "quiet_hours"
        self._report.policy[reason] += 1
        self._report.messages[(step.node.id, channel, "suppressed")] += 1
        return "suppressed", reason, at

    def _answer_outcome_wait(self, run: Run, at: datetime) -> None:
        """A run now waiting for an outcome the replay already decided (sent or suppressed) of
        its own message moves on; other outcomes (opens, clicks) are not foreseen: it times out."""
        node = self._journey.nodes.get(run.node_id) if run.node_id else None
        if not isinstance(node, WaitFor) or node.send_node is None:
            return
        request = run.requests.get(node.send_node)
        outcome = self._outcomes.get(request) if request else None
        if outcome is None or request is None:
            return
        if waits_for_outcome(self._journey, run, outcome[0], node.send_node, request):
            leave_wait(self._journey, run, self._walk, "matched")
            self._advance(run, max(at, outcome[1]))

    def _end_path(self) -> None:
        if self._run is not None and self._walk.path:
            self._report.paths[tuple(self._walk.path)] += 1
        self._walk.path = []

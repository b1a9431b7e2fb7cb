"""Whether a message may go now: consent, unsubscribes (from channels and subscription topics),
quiet hours, frequency caps, and the arbitration between marketing messages that compete for the
same person.

Pure functions: dispatch applies them to what its sender loaded for a batch, and journey's dry
run to the policy and preferences it asked dispatch for. No I/O, unit-tested on their own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from libs.common.values import DurationRules, parse_duration

ALL_CHANNELS = "*"
MAX_WINDOW = timedelta(days=366)
DEFAULT_MAX_DEFER = timedelta(days=7)
MAX_ARBITRATION_WINDOW = timedelta(days=1)
_CLOCK = re.compile(r"^(?P<h>[01]\d|2[0-3]):(?P<m>[0-5]\d)(?::(?P<s>[0-5]\d))?$")
_CHANNEL = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class InvalidPolicy(ValueError):
    """A policy document that cannot be applied; `path` names the part that is wrong."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


@dataclass(frozen=True)
class Cap:
    """At most `max` messages on `channel` (`*`: all channels together) per rolling `window`."""

    channel: str
    max: int
    window: timedelta


@dataclass(frozen=True)
class QuietHours:
    """Local clock times between which nothing is sent; `channels` None means every channel."""

    start: time
    end: time
    channels: frozenset[str] | None = None

    def applies_to(self, channel: str) -> bool:
        return self.channels is None or channel in self.channels


@dataclass(frozen=True)
class Arbitration:
    """Marketing messages to one person are held `window` after the first arrives, so that
    the others asked for meanwhile compete with it; a deferred message is dropped once it
    would wait longer than `max_defer` after it was asked for."""

    window: timedelta | None = None
    max_defer: timedelta = DEFAULT_MAX_DEFER


@dataclass(frozen=True)
class SendPolicy:
    caps: tuple[Cap, ...] = ()
    quiet_hours: QuietHours | None = None
    arbitration: Arbitration = field(default_factory=Arbitration)

    @property
    def longest_window(self) -> timedelta:
        return max((cap.window for cap in self.caps), default=timedelta(0))


@dataclass(frozen=True)
class Preferences:
    """A profile's own say, as dispatch recorded it: consent per channel, the channels it
    unsubscribed from, and whether it is subscribed to each topic on each channel."""

    consent: Mapping[str, bool] = field(default_factory=dict)
    unsubscribed: frozenset[str] = frozenset()
    topics: Mapping[str, Mapping[str, bool]] = field(default_factory=dict)


@dataclass(frozen=True)
class TraitAnswers:
    """What the source systems' traits said, carried on the message (libs/common/consent.py):
    consent per channel, and subscribed per topic and channel (`*`: every channel)."""

    consent: Mapping[str, bool] = field(default_factory=dict)
    subscriptions: Mapping[str, Mapping[str, bool]] = field(default_factory=dict)


NO_TRAIT_ANSWERS = TraitAnswers()


@dataclass(frozen=True)
class TopicRule:
    """The subscription topic a message names: opt-out (subscribed until they say no) unless
    `default_subscribed` is false (opt-in: sent only after a yes)."""

    topic_id: str
    default_subscribed: bool = True


@dataclass(frozen=True)
class Decision:
    """`send` now; `suppress` for `reason` (about `topic`, when it names one); or `defer` until
    `until`."""

    action: Literal["send", "suppress", "defer"]
    reason: Literal["consent", "unsubscribed", "frequency_cap", "quiet_hours"] | None = None
    until: datetime | None = None
    topic: str | None = None


SEND = Decision("send")


@dataclass(frozen=True)
class Contender:
    """A message competing for its person's caps: ranked by `priority` (higher first), then
    by when it was asked for (`requested_at`, earlier first). `traits` and `topic` are what
    `decide` reads of it besides its channel and zone."""

    message_id: str
    channel: str
    requested_at: datetime
    priority: int = 50
    on_conflict: Literal["drop", "defer"] = "drop"
    transactional: bool = False
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    traits: TraitAnswers = NO_TRAIT_ANSWERS
    topic: TopicRule | None = None


@dataclass(frozen=True)
class Verdict:
    """What became of a contender, and the contender of this arbitration that took the cap it
    met (None when earlier sends had filled it)."""

    decision: Decision
    won_by: Contender | None = None


def decide(
    channel: str,
    now: datetime,
    *,
    preferences: Preferences,
    policy: SendPolicy,
    sent: Sequence[tuple[str, datetime]],
    zone: ZoneInfo,
    default_consent: bool,
    traits: TraitAnswers = NO_TRAIT_ANSWERS,
    topic: TopicRule | None = None,
) -> Decision:
    """What to do with one message on `channel` at `now`, given the profile's sends so far.

    `sent` holds (channel, when) of the profile's messages that count towards caps. Consent
    and subscriptions have two sources, dispatch's own record and the traits the message
    carried: a no from either holds. Quiet hours come before caps: a deferred message is
    decided again when they end, against the caps then.
    """
    if channel in preferences.unsubscribed:
        return Decision("suppress", "unsubscribed")
    if not _agreed(
        (preferences.consent.get(channel), traits.consent.get(channel)), default_consent
    ):
        return Decision("suppress", "consent")
    if topic is not None:
        refusal = _topic_refusal(channel, topic, preferences, traits)
        if refusal is not None:
            return refusal
    quiet = policy.quiet_hours
    if quiet is not None and quiet.applies_to(channel):
        until = quiet_hours_end(quiet, now, zone)
        if until is not None:
            return Decision("defer", "quiet_hours", until)
    if any(_cap_reached(cap, channel, now, sent) for cap in policy.caps):
        return Decision("suppress", "frequency_cap")
    return SEND


def _agreed(answers: Sequence[bool | None], default: bool) -> bool:
    """A no from any source holds; then a yes from any; with no answer, the default."""
    if False in answers:
        return False
    return True in answers or default


def _topic_refusal(
    channel: str, topic: TopicRule, preferences: Preferences, traits: TraitAnswers
) -> Decision | None:
    recorded = preferences.topics.get(topic.topic_id, {})
    carried = traits.subscriptions.get(topic.topic_id, {})
    answers = (recorded.get(channel), carried.get(channel), carried.get(ALL_CHANNELS))
    if False in answers:
        return Decision("suppress", "unsubscribed", topic=topic.topic_id)
    if not _agreed(answers, topic.default_subscribed):
        return Decision("suppress", "consent", topic=topic.topic_id)
    return None


def _cap_reached(
    cap: Cap, channel: str, now: datetime, sent: Sequence[tuple[str, datetime]]
) -> bool:
    if cap.channel not in (ALL_CHANNELS, channel):
        return False
    since = now - cap.window
    counted = sum(
        1 for sent_channel, at in sent if at > since and cap.channel in (ALL_CHANNELS, sent_channel)
    )
    return counted >= cap.max


def arbitrate(
    contenders: Sequence[Contender],
    now: datetime,
    *,
    preferences: Preferences,
    policy: SendPolicy,
    sent: Sequence[tuple[str, datetime]],
    default_consent: bool,
) -> dict[str, Verdict]:
    """One person's messages due now, decided together: transactional ones go whatever the
    policy says; marketing ones are decided one after another by rank, each counting the
    winners before it, so the caps go to the highest priority (ties: the earliest asked for).
    A loser to a full cap is dropped, or with `on_conflict: defer` deferred until the cap has
    room (dropped all the same past the policy's `max_defer`)."""
    verdicts: dict[str, Verdict] = {}
    counted = list(sent)
    winners: list[Contender] = []
    for contender in sorted(contenders, key=_rank):
        if contender.transactional:
            verdicts[contender.message_id] = Verdict(SEND)
            continue
        decision = decide(
            contender.channel,
            now,
            preferences=preferences,
            policy=policy,
            sent=counted,
            zone=contender.zone,
            default_consent=default_consent,
            traits=contender.traits,
            topic=contender.topic,
        )
        if decision.action == "send":
            winners.append(contender)
            counted.append((contender.channel, now))
            verdicts[contender.message_id] = Verdict(SEND)
        elif decision.reason == "frequency_cap":
            verdicts[contender.message_id] = _loses(contender, now, policy, counted, winners)
        else:
            verdicts[contender.message_id] = Verdict(decision)
    return verdicts


def _rank(contender: Contender) -> tuple[bool, int, datetime, str]:
    return (
        not contender.transactional,
        -contender.priority,
        contender.requested_at,
        contender.message_id,
    )


def _loses(
    contender: Contender,
    now: datetime,
    policy: SendPolicy,
    counted: Sequence[tuple[str, datetime]],
    winners: Sequence[Contender],
) -> Verdict:
    full = [cap for cap in policy.caps if _cap_reached(cap, contender.channel, now, counted)]
    won_by = next(
        (w for w in winners if any(cap.channel in (ALL_CHANNELS, w.channel) for cap in full)),
        None,
    )
    until = cap_room_at(full, now, counted) if contender.on_conflict == "defer" else None
    arbitration = policy.arbitration
    if until is None or until - contender.requested_at > arbitration.max_defer:
        return Verdict(Decision("suppress", "frequency_cap"), won_by)
    return Verdict(Decision("defer", "frequency_cap", until), won_by)


def cap_room_at(
    caps: Sequence[Cap], now: datetime, counted: Sequence[tuple[str, datetime]]
) -> datetime | None:
    """When every one of `caps` has room again, if no one else is sent meanwhile; None when
    one of them allows nothing at all (`max` 0)."""
    room = now
    for cap in caps:
        if cap.max == 0:
            return None
        times = sorted(
            (at for channel, at in counted if cap.channel in (ALL_CHANNELS, channel)),
            reverse=True,
        )
        if len(times) >= cap.max:
            room = max(room, times[cap.max - 1] + cap.window)
    return room


def quiet_hours_end(quiet: QuietHours, now: datetime, zone: ZoneInfo) -> datetime | None:
    """When the quiet hours `now` falls in end (UTC); None when `now` is not in quiet hours."""
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    today = local.date()
    if quiet.start == quiet.end:
        return None
    if quiet.start < quiet.end:
        if not quiet.start <= clock < quiet.end:
            return None
        end_day = today
    elif clock >= quiet.start:  # across midnight, in the evening part
        end_day = today + timedelta(days=1)
    elif clock < quiet.end:  # across midnight, in the morning part
        end_day = today
    else:
        return None
    return datetime.combine(end_day, quiet.end, tzinfo=zone).astimezone(UTC)


def profile_zone(name: str | None) -> ZoneInfo:
    """The profile's IANA zone; UTC when it has none or names one that does not exist."""
    if name:
        zone = parse_zone(name)
        if zone is not None:
            return zone
    return ZoneInfo("UTC")


def parse_zone(name: str) -> ZoneInfo | None:
    if not isinstance(name, str) or not 0 < len(name) <= 64 or "\x00" in name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


# A cap's window: weeks down to whole seconds, at most MAX_WINDOW.
_WINDOWS = DurationRules(
    longest=MAX_WINDOW,
    fractional_seconds=False,
    malformed="not an ISO 8601 duration (such as P1D, PT12H or P7D)",
    not_positive="a window must be longer than zero",
    too_long="a window can be at most 366 days",
    error=InvalidPolicy,
)


def parse_clock(text: Any, path: str) -> time:
    match = _CLOCK.match(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidPolicy(path, "not a clock time HH:MM or HH:MM:SS")
    return time(int(match["h"]), int(match["m"]), int(match["s"] or 0))


def parse_policy(document: Any) -> SendPolicy:
    """The policy a stored or submitted document describes; InvalidPolicy names what is wrong."""
    if not isinstance(document, dict):
        raise InvalidPolicy("policy", "must be an object")
    unknown = set(document) - {"caps", "quiet_hours", "arbitration"}
    if unknown:
        raise InvalidPolicy(sorted(unknown)[0], "unknown field")
    caps_value = document.get("caps", [])
    if not isinstance(caps_value, list) or len(caps_value) > 100:
        raise InvalidPolicy("caps", "must be a list of at most 100 caps")
    caps = tuple(_parse_cap(item, f"caps[{index}]") for index, item in enumerate(caps_value))
    quiet_value = document.get("quiet_hours")
    quiet = None if quiet_value is None else _parse_quiet_hours(quiet_value, "quiet_hours")
    arbitration_value = document.get("arbitration")
    arbitration = (
        Arbitration()
        if arbitration_value is None
        else _parse_arbitration(arbitration_value, "arbitration")
    )
    return SendPolicy(caps, quiet, arbitration)


def check_caps_kept(policy: SendPolicy, ledger_kept: timedelta) -> None:
    """A cap counts the ledger's sends in its window: a window longer than the ledger keeps its
    finished sends would count only part of it. InvalidPolicy names the first such cap."""
    for index, cap in enumerate(policy.caps):
        if cap.window > ledger_kept:
            raise InvalidPolicy(
                f"caps[{index}].window",
                f"longer than the send ledger is kept ({ledger_kept.days} days: "
                "CLOSELOOP_DISPATCH_SEND_RETENTION_DAYS)",
            )


def _parse_cap(item: Any, path: str) -> Cap:
    if not isinstance(item, dict) or set(item) - {"channel", "max", "window"}:
        raise InvalidPolicy(path, "a cap is {channel, max, window}")
    channel = _parse_channel(item.get("channel"), f"{path}.channel", allow_all=True)
    limit = item.get("max")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= 1_000_000:
        raise InvalidPolicy(f"{path}.max", "must be a whole number from 0 to 1000000")
    return Cap(channel, limit, parse_duration(item.get("window"), f"{path}.window", rules=_WINDOWS))


def _parse_arbitration(value: Any, path: str) -> Arbitration:
    if not isinstance(value, dict) or set(value) - {"window", "max_defer"}:
        raise InvalidPolicy(path, "arbitration is {window?, max_defer?}")
    window = value.get("window")
    if window is not None:
        window = parse_duration(window, f"{path}.window", rules=_WINDOWS)
        if window > MAX_ARBITRATION_WINDOW:
            raise InvalidPolicy(f"{path}.window", "an arbitration window is at most a day (P1D)")
    max_defer = value.get("max_defer")
    if max_defer is None:
        return Arbitration(window)
    return Arbitration(window, parse_duration(max_defer, f"{path}.max_defer", rules=_WINDOWS))


def _parse_quiet_hours(value: Any, path: str) -> QuietHours:
    if not isinstance(value, dict) or set(value) - {"start", "end", "channels"}:
        raise InvalidPolicy(path, "quiet hours are {start, end, channels?}")
    start = parse_clock(value.get("start"), f"{path}.start")
    end = parse_clock(value.get("end"), f"{path}.end")
    if start == end:
        raise InvalidPolicy(f"{path}.end", "quiet hours must end at another time than they start")
    channels_value = value.get("channels")
    if channels_value is None:
        return QuietHours(start, end)
    if not isinstance(channels_value, list) or not channels_value or len(channels_value) > 100:
        raise InvalidPolicy(f"{path}.channels", "must be a non-empty list of channel names")
    channels = frozenset(
        _parse_channel(name, f"{path}.channels[{index}]", allow_all=False)
        for index, name in enumerate(channels_value)
    )
    return QuietHours(start, end, channels)


def _parse_channel(value: Any, path: str, *, allow_all: bool) -> str:
    if allow_all and value == ALL_CHANNELS:
        return ALL_CHANNELS
    if not isinstance(value, str) or not _CHANNEL.match(value):
        expected = "a channel name or `*`" if allow_all else "a channel name"
        raise InvalidPolicy(path, f"must be {expected} (lowercase letters, digits, _)")
    return value


def merged_preferences(survivor: Preferences | None, merged: Sequence[Preferences]) -> Preferences:
    """One person's preferences after a merge: the survivor's own answers win, and an
    unsubscribe or a consent from any merged profile still holds where the survivor said nothing.
    """
    consent: dict[str, bool] = {}
    unsubscribed: set[str] = set()
    topics: dict[str, dict[str, bool]] = {}
    everyone = [*merged, *([survivor] if survivor else [])]
    for preferences in everyone:
        consent.update(preferences.consent)
        unsubscribed |= preferences.unsubscribed
        for topic, answers in preferences.topics.items():
            topics.setdefault(topic, {}).update(answers)
    # An unsubscribe from a topic is an unsubscribe, whoever of them said it.
    for preferences in everyone:
        for topic, answers in preferences.topics.items():
            topics[topic].update({channel: False for channel, yes in answers.items() if not yes})
    return Preferences(consent, frozenset(unsubscribed), topics)

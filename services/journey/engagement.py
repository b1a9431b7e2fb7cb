"""Engagement evidence: per person, channel and local hour, the messages sent and how many of
them were opened or clicked, each message counted once and at the hour it was sent.

Pure: the handler loads the records of the messages a batch's outcomes name, takes the outcomes
in order, and writes what changed. A click can come before its `message.sent` (the provider's
receipt and the recipient's click travel separately), so a record keeps an engagement until it
learns the hour it was sent at.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

# Outcomes that count as engaging with a message (the first of them, once per message).
ENGAGEMENTS = frozenset({"opened", "clicked"})


@dataclass
class MessageRecord:
    """One message as journey counts it: whose, on which channel, whether its hour was the
    send-time model's choice, the local hour it was sent at (None until sent), and whether it was
    engaged with. Keyed by request: dispatch sends at most one message per request, and journey
    knows the request (and whether it timed it) before dispatch names the message."""

    request_id: str
    profile_id: str
    channel: str
    targeted: bool = False
    hour: int | None = None
    engaged: bool = False


@dataclass
class Tally:
    sends: int = 0
    engaged: int = 0


PersonCell = tuple[str, str, int]
"""(profile_id, channel, local hour)."""
PopulationCell = tuple[str, int]
"""(channel, local hour)."""


@dataclass
class EngagementChanges:
    """What to write: the records changed, and the counts to add per person cell and, for
    untargeted sends, per population cell."""

    messages: list[MessageRecord] = field(default_factory=list)
    people: dict[PersonCell, Tally] = field(default_factory=dict)
    untargeted: dict[PopulationCell, Tally] = field(default_factory=dict)


class EngagementBook:
    """The records of one batch's messages and the counts its outcomes add."""

    def __init__(self, records: Iterable[MessageRecord]) -> None:
        self._records = {record.request_id: record for record in records}
        self._changed: set[str] = set()
        self._people: defaultdict[PersonCell, Tally] = defaultdict(Tally)
        self._untargeted: defaultdict[PopulationCell, Tally] = defaultdict(Tally)

    def take(
        self,
        outcome: str,
        request_id: str,
        profile_id: str,
        channel: str,
        at: datetime,
        zone: ZoneInfo,
    ) -> bool:
        """Count what one outcome of a message says: `sent` (at `at`, read in the person's
        zone) counts the send, `opened` and `clicked` the engagement; the others say nothing
        about engagement. True when the person's counts changed."""
        if outcome == "sent":
            return self._sent(request_id, profile_id, channel, at.astimezone(zone).hour)
        if outcome in ENGAGEMENTS:
            return self._engaged(request_id, profile_id, channel)
        return False

    def _sent(self, request_id: str, profile_id: str, channel: str, hour: int) -> bool:
        """Count the send at its local hour, with an engagement that came before it; once."""
        record = self._record(request_id, profile_id, channel)
        if record.hour is not None:
            return False
        record.hour = hour
        self._changed.add(request_id)
        self._add(record, sends=1, engaged=int(record.engaged))
        return True

    def _engaged(self, request_id: str, profile_id: str, channel: str) -> bool:
        """The message's first open or click: counted at the hour it was sent, now or once it
        is sent."""
        record = self._record(request_id, profile_id, channel)
        if record.engaged:
            return False
        record.engaged = True
        self._changed.add(request_id)
        if record.hour is None:
            return False
        self._add(record, sends=0, engaged=1)
        return True

    def merge(self, survivor: str, merged: Collection[str]) -> None:
        """The merged profiles' messages and unwritten counts become the survivor's (the
        database moves what it holds of them)."""
        for record in self._records.values():
            if record.profile_id in merged:
                record.profile_id = survivor
        for (profile_id, channel, hour), tally in list(self._people.items()):
            if profile_id in merged:
                del self._people[profile_id, channel, hour]
                mine = self._people[survivor, channel, hour]
                mine.sends += tally.sends
                mine.engaged += tally.engaged

    def forget(self, profile_id: str) -> None:
        """An erased profile's messages and unwritten counts. The population's untargeted
        counts hold no one and stay."""
        self._records = {
            request: record
            for request, record in self._records.items()
            if record.profile_id != profile_id
        }
        self._changed &= self._records.keys()
        for cell in [cell for cell in self._people if cell[0] == profile_id]:
            del self._people[cell]

    def take_changes(self) -> EngagementChanges:
        """What changed since the last call; the book then starts afresh on what it holds."""
        changes = EngagementChanges(
            [self._records[request] for request in sorted(self._changed)],
            dict(self._people),
            dict(self._untargeted),
        )
        self._changed.clear()
        self._people.clear()
        self._untargeted.clear()
        return changes

    def _record(self, request_id: str, profile_id: str, channel: str) -> MessageRecord:
        record = self._records.get(request_id)
        if record is None:
            record = self._records[request_id] = MessageRecord(request_id, profile_id, channel)
        return record

    def _add(self, record: MessageRecord, *, sends: int, engaged: int) -> None:
        assert record.hour is not None
        person = self._people[record.profile_id, record.channel, record.hour]
        person.sends += sends
        person.engaged += engaged
        if not record.targeted:
            population = self._untargeted[record.channel, record.hour]
            population.sends += sends
            population.engaged += engaged

"""Requests waiting for an address: the pure part.

A `message.requested` can reach content before the `profile.updated` that gives its profile
the channel's address (the two topics are not ordered with each other). Such a request waits
(`awaiting_address`) until a later batch's profile changes give the profile an address for the
channel, and is answered then, as if it had just arrived; one that waits longer than the
setting is given up (`undeliverable`).

A channel without an address (a webhook) still renders the profile's traits: its request waits
in the same way until content has heard of the profile at all, so a person who enters a journey
the moment they sign up is not sent a payload with their name left out.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from libs.common.addresses import ADDRESS_TRAITS
from libs.common.events import MessageRequested
from services.content.profiles import ProfileFacts, recipient_for


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """A request to answer: one that just arrived, or one that waited for an address.

    `profile_id` is whose profile answers it: the request's, or the survivor its profile was
    merged into while it waited. `cause_id` and `traceparent` are the request event's, so that
    the answer names it as its cause however late it comes; `arrived_at` is when content first
    saw it.
    """

    request: MessageRequested
    profile_id: str
    cause_id: str
    traceparent: str | None
    arrived_at: datetime


# Channels whose messages go to a configured endpoint, not to an address of the person.
ADDRESSLESS_CHANNELS = frozenset({"webhook"})


def addressed_channels(facts: ProfileFacts | None) -> frozenset[str]:
    """The channels the profile can be sent on: those it has an address for, and those that
    need none once content knows the profile (None: content has not heard of it)."""
    if facts is None:
        return frozenset()
    addressed = (c for c in ADDRESS_TRAITS if recipient_for(c, facts) is not None)
    return ADDRESSLESS_CHANNELS.union(addressed)


def newly_addressed(
    before: Mapping[str, frozenset[str]],
    after: Iterable[ProfileFacts],
    survivors: Collection[str] = (),
) -> list[tuple[str, str]]:
    """The (profile, channel) pairs whose waiting requests a batch can now answer, sorted.

    A profile that has an address for a channel it had none for before the batch (a new
    profile has none before); a merge survivor for every channel it has an address for (the
    merged profiles' waiting requests became its own).
    """
    pairs: set[tuple[str, str]] = set()
    for facts in after:
        now = addressed_channels(facts)
        if facts.profile_id not in survivors:
            now = now - before.get(facts.profile_id, frozenset())
        pairs.update((facts.profile_id, channel) for channel in now)
    return sorted(pairs)


def expired(arrived_at: datetime, now: datetime, wait_seconds: float) -> bool:
    """Whether a request that arrived then has waited longer than content answers it."""
    return now - arrived_at > timedelta(seconds=wait_seconds)

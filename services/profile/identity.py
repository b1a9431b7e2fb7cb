"""Identity resolution: which profile a call belongs to, and which profiles turn out to be one."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from libs.common.events import (
    IngestAlias,
    IngestGroup,
    IngestIdentify,
    IngestPage,
    IngestScreen,
    IngestTrack,
)

USER_ID = "user_id"
ANONYMOUS_ID = "anonymous_id"
EMAIL = "email"
PHONE = "phone"
BUILT_IN_KINDS = (USER_ID, ANONYMOUS_ID, EMAIL, PHONE)

IngestCall = IngestTrack | IngestIdentify | IngestPage | IngestScreen | IngestGroup | IngestAlias

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PHONE_NOISE = re.compile(r"[\s\-().]")
_MAX_VALUE_LENGTH = 255
# Profile ids are unique, not secret: no system call per new profile (see decision 0008).
_random = random.Random()


class Identifier(NamedTuple):
    """One way to recognise a person: `email:li.wei@example.com`, `user_id:u_48213`…

    A named tuple: hashed and compared in C, as every batch does thousands of times.
    """

    kind: str
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


def new_profile_id(at_seconds: float | None = None) -> str:
    """`prf_` + a ULID: 48 bits of milliseconds then 80 random bits, in Crockford base 32."""
    millis = int((time.time() if at_seconds is None else at_seconds) * 1000) & (2**48 - 1)
    number = (millis << 80) | _random.getrandbits(80)
    return "prf_" + "".join(_CROCKFORD[(number >> shift) & 31] for shift in range(125, -1, -5))


def normalise(kind: str, value: Any) -> str | None:
    """The value as the graph stores it, or None when it identifies nobody.

    Emails compare case-insensitively; phones without spaces, dashes, dots or brackets.
    """
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    text = str(value).strip()
    if kind == EMAIL:
        text = text.lower()
        if "@" not in text:
            return None
    elif kind == PHONE:
        text = _PHONE_NOISE.sub("", text)
    if not text or len(text) > _MAX_VALUE_LENGTH:
        return None
    return text


def parse_identifier(text: str, external_kinds: Collection[str]) -> Identifier:
    """`<type>:<value>` from a query string; ValueError says what is wrong."""
    kind, separator, value = text.partition(":")
    if not separator:
        raise ValueError("an identifier looks like <type>:<value>, e.g. email:a@b.c")
    if kind not in BUILT_IN_KINDS and kind not in external_kinds:
        known = ", ".join([*BUILT_IN_KINDS, *external_kinds])
        raise ValueError(f"unknown identifier type {kind!r}; use one of {known}")
    normalised = normalise(kind, value)
    if normalised is None:
        raise ValueError(f"{value!r} is not a valid {kind}")
    return Identifier(kind, normalised)


@dataclass(frozen=True, slots=True)
class CallIdentity:
    """The identifiers of one call: those to look up, those to link, and whether it may merge.

    `lookup` is in precedence order (user id first, anonymous id last): a call that may not
    merge lands on the profile of its first known identifier.
    """

    lookup: tuple[Identifier, ...]
    link: tuple[Identifier, ...]
    may_merge: bool


def call_identity(call: IngestCall, external_kinds: Collection[str]) -> CallIdentity:
    """What a call says about who it is; only identify and alias may merge profiles."""
    call_type = type(call)  # exact types first: isinstance on pydantic models goes through ABCMeta
    if call_type is IngestAlias or (
        call_type not in _NEITHER_ALIAS_NOR_IDENTIFY and isinstance(call, IngestAlias)
    ):
        call = cast(IngestAlias, call)
        user = Identifier(USER_ID, call.user_id)
        previous_user = Identifier(USER_ID, call.previous_id)
        # The previous id is whatever the client called the person before: a user id or an
        # anonymous id. Both are looked up; it is linked as a user id when neither is known.
        lookup = (user, previous_user, Identifier(ANONYMOUS_ID, call.previous_id))
        return CallIdentity(lookup, (user, previous_user), may_merge=True)
    identify = call_type is IngestIdentify or (
        call_type not in _NEITHER_ALIAS_NOR_IDENTIFY and isinstance(call, IngestIdentify)
    )
    traits = cast(IngestIdentify, call).traits if identify else {}
    identifiers = _ordered_unique(_identifiers(call, traits, external_kinds))
    return CallIdentity(identifiers, identifiers, may_merge=identify)


# The calls that are neither alias nor identify, whatever their subclasses are.
_NEITHER_ALIAS_NOR_IDENTIFY = frozenset({IngestTrack, IngestPage, IngestScreen, IngestGroup})


def _identifiers(
    call: IngestCall, traits: Mapping[str, Any], external_kinds: Collection[str]
) -> list[Identifier]:
    found: list[Identifier] = []
    if call.user_id is not None:
        found.append(Identifier(USER_ID, call.user_id))
    context = call.context
    context_traits = context.get("traits")
    sources = [traits]
    if isinstance(context_traits, dict) and context_traits:
        sources.append(context_traits)
    if context:
        for kind in external_kinds:
            _found(found, kind, sources)
            _found(found, kind, (context,))
        if "externalIds" in context:
            found.extend(_external_ids(context["externalIds"], external_kinds))
    else:
        for kind in external_kinds:
            _found(found, kind, sources)
    _found(found, EMAIL, sources)
    _found(found, PHONE, sources)
    if call.anonymous_id is not None:
        found.append(Identifier(ANONYMOUS_ID, call.anonymous_id))
    return found


def _found(found: list[Identifier], kind: str, sources: Sequence[Mapping[str, Any]]) -> None:
    for source in sources:
        if source:  # most calls carry no identifier beyond their ids: skip empty sources fast
            raw = source.get(kind)
            if raw is not None:
                value = normalise(kind, raw)
                if value is not None:
                    found.append(Identifier(kind, value))


def _external_ids(listed: Any, external_kinds: Collection[str]) -> Iterable[Identifier]:
    """Segment's `context.externalIds`: [{"id": ..., "type": ...}, ...]."""
    if not isinstance(listed, list):
        return
    for entry in listed:
        if isinstance(entry, dict) and entry.get("type") in external_kinds:
            value = normalise(entry["type"], entry.get("id"))
            if value is not None:
                yield Identifier(entry["type"], value)


def _ordered_unique(identifiers: Iterable[Identifier]) -> tuple[Identifier, ...]:
    return tuple(dict.fromkeys(identifiers))


@dataclass(frozen=True, slots=True)
class Resolution:
    """Where a call landed: its profile, whether that profile is new, which profiles merged in."""

    profile_id: str
    created: bool = False
    merged_ids: tuple[str, ...] = ()


@dataclass
class IdentityGraph:
    """A batch's working copy of the identity graph: resolves calls in order, merging on the way.

    `links` holds what the database knew about the batch's identifiers; `created_at` the
    creation time of every profile involved, which decides a merge's survivor: the oldest
    profile, ties broken by the smaller id, so any replica and any replay pick the same one.
    """

    links: dict[Identifier, str]
    created_at: dict[str, float]
    new_id: Callable[[float], str] = new_profile_id
    _redirects: dict[str, str] = field(default_factory=dict)
    _linked: set[Identifier] = field(default_factory=set)

    def resolve(self, identity: CallIdentity, at: float) -> Resolution:
        owners = self._owners(identity.lookup)
        if not owners:
            profile_id = self.new_id(at)
            self.created_at[profile_id] = at
            self._link(identity.link, profile_id)
            return Resolution(profile_id, created=True)
        if identity.may_merge and len(owners) > 1:
            survivor = min(owners, key=lambda owner: (self.created_at[owner], owner))
            merged = tuple(owner for owner in owners if owner != survivor)
            for owner in merged:
                self._redirects[owner] = survivor
            self._link(identity.link, survivor)
            return Resolution(survivor, merged_ids=merged)
        self._link(identity.link, owners[0])
        return Resolution(owners[0])

    def canonical(self, profile_id: str) -> str:
        while profile_id in self._redirects:
            profile_id = self._redirects[profile_id]
        return profile_id

    def merges(self) -> dict[str, str]:
        """Every profile merged in this batch, with the profile that finally survived it."""
        return {merged: self.canonical(merged) for merged in self._redirects}

    def new_links(self) -> dict[Identifier, str]:
        """Identifiers first linked in this batch, with their canonical profile."""
        return {identifier: self.canonical(self.links[identifier]) for identifier in self._linked}

    def _owners(self, lookup: Sequence[Identifier]) -> list[str]:
        """The canonical profiles of the known identifiers, each once, in lookup order."""
        links, redirects = self.links, self._redirects
        owners: list[str] = []
        for identifier in lookup:
            owner = links.get(identifier)
            if owner is not None:
                while owner in redirects:
                    owner = redirects[owner]
                if owner not in owners:
                    owners.append(owner)
        return owners

    def _link(self, identifiers: Sequence[Identifier], profile_id: str) -> None:
        for identifier in identifiers:
            if identifier not in self.links:
                self.links[identifier] = profile_id
                self._linked.add(identifier)

"""Consent and subscriptions as the source systems keep them in traits: the documented mapping
(docs/campaigns.md, decision 0026).

Content reads them from the facts a request carries and passes them on with the message
(`message.rendered` `consent`); dispatch honours them beside the answers it records itself.

- `<channel>_opt_in: true/false` (`email_opt_in`, `sms_opt_in`…): consent for the channel
  given or withdrawn;
- `subscriptions: {"<topic>": true/false}`: subscribed to the topic on every channel, or not;
- `subscriptions: {"<topic>": {"<channel>": true/false}}`: the same, on that channel only.

Only JSON booleans count: any other value, or a name that is not a channel or topic, says nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from libs.common.contact_policy import NO_TRAIT_ANSWERS, TraitAnswers
from libs.common.events import CarriedConsent

OPT_IN_SUFFIX = "_opt_in"
SUBSCRIPTIONS_TRAIT = "subscriptions"
EVERY_CHANNEL = "*"
_CHANNEL = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_TOPIC = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def consent_from_traits(traits: Mapping[str, Any]) -> CarriedConsent | None:
    """What the traits say about consent and subscriptions; None when they say nothing."""
    channels = {
        name.removesuffix(OPT_IN_SUFFIX): value
        for name, value in traits.items()
        if name.endswith(OPT_IN_SUFFIX)
        and isinstance(value, bool)
        and _CHANNEL.match(name.removesuffix(OPT_IN_SUFFIX))
    }
    subscriptions = _subscriptions(traits.get(SUBSCRIPTIONS_TRAIT))
    if not channels and not subscriptions:
        return None
    return CarriedConsent(channels=channels, subscriptions=subscriptions)


def _subscriptions(value: Any) -> dict[str, dict[str, bool]]:
    if not isinstance(value, Mapping):
        return {}
    found: dict[str, dict[str, bool]] = {}
    for topic, answer in value.items():
        if not isinstance(topic, str) or not _TOPIC.match(topic):
            continue
        by_channel = _by_channel(answer)
        if by_channel:
            found[topic] = by_channel
    return found


def _by_channel(answer: Any) -> dict[str, bool]:
    if isinstance(answer, bool):
        return {EVERY_CHANNEL: answer}
    if not isinstance(answer, Mapping):
        return {}
    return {
        channel: value
        for channel, value in answer.items()
        if isinstance(channel, str) and _CHANNEL.match(channel) and isinstance(value, bool)
    }


def trait_answers(traits: Mapping[str, Any]) -> TraitAnswers:
    """What the traits say, as the contact policy decides by it (dispatch gets the same from
    the message's `consent`; journey's dry run from the profile's traits)."""
    # Most people's traits say nothing of consent: answered without building anything.
    if SUBSCRIPTIONS_TRAIT not in traits and not any(
        name.endswith(OPT_IN_SUFFIX) for name in traits
    ):
        return NO_TRAIT_ANSWERS
    carried = consent_from_traits(traits)
    if carried is None:
        return NO_TRAIT_ANSWERS
    return TraitAnswers(carried.channels, carried.subscriptions)

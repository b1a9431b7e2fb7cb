"""Closeloop's events: the CloudEvents envelope and the model of every event type in the loop."""

from libs.common.events.envelope import (
    Event,
    EventData,
    EventDecodeError,
    decode,
    encode,
    registry,
)

__all__ = ["Event", "EventData", "EventDecodeError", "decode", "encode", "registry"]

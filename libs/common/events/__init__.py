"""Closeloop's events: the CloudEvents envelope and the model of every event type in the loop."""

from libs.common.events.behavior import BehaviorOccurred
from libs.common.events.conversion import ConversionAttributed
from libs.common.events.envelope import (
    Event,
    EventData,
    EventDecodeError,
    decode,
    encode,
    registry,
)
from libs.common.events.ingest import (
    IngestAlias,
    IngestGroup,
    IngestIdentify,
    IngestPage,
    IngestScreen,
    IngestTrack,
)
from libs.common.events.message import (
    ArbitrationWinner,
    CarriedConsent,
    ContactRule,
    JourneyRef,
    MessageClicked,
    MessageDeferred,
    MessageDelivered,
    MessageFailed,
    MessageOpened,
    MessageRendered,
    MessageRequested,
    MessageSent,
    MessageSuppressed,
    MessageUnsubscribed,
    ProfileSnapshot,
)
from libs.common.events.profile import (
    ProfileChange,
    ProfileChangeRequested,
    ProfileDeleted,
    ProfileMerged,
    ProfileUpdated,
)
from libs.common.events.segment import SegmentEntered, SegmentExited

__all__ = [
    "ArbitrationWinner",
    "BehaviorOccurred",
    "CarriedConsent",
    "ContactRule",
    "ConversionAttributed",
    "Event",
    "EventData",
    "EventDecodeError",
    "IngestAlias",
    "IngestGroup",
    "IngestIdentify",
    "IngestPage",
    "IngestScreen",
    "IngestTrack",
    "JourneyRef",
    "MessageClicked",
    "MessageDeferred",
    "MessageDelivered",
    "MessageFailed",
    "MessageOpened",
    "MessageRendered",
    "MessageRequested",
    "MessageSent",
    "MessageSuppressed",
    "MessageUnsubscribed",
    "ProfileChange",
    "ProfileChangeRequested",
    "ProfileDeleted",
    "ProfileMerged",
    "ProfileSnapshot",
    "ProfileUpdated",
    "SegmentEntered",
    "SegmentExited",
    "decode",
    "encode",
    "registry",
]

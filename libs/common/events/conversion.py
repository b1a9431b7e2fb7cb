"""attribution.v1: a conversion, and the message credited with it."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal, Self

from pydantic import (
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from libs.common import topics
from libs.common.events.envelope import EventData
from libs.common.events.fields import Channel, EntityId, EventTime, Name, ProfileId
from libs.common.events.message import JourneyRef

AttributionModel = Literal["last_touch", "first_touch", "linear", "time_decay", "position_based"]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
# Money travels as a decimal string so no consumer rounds it through a float.
Amount = Annotated[
    Decimal,
    Field(ge=0),
    WithJsonSchema({"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"}, mode="serialization"),
]


class ConversionAttributed(EventData):
    """A conversion was credited, in whole or in part, to a message.

    Multi-touch models credit several messages: one event each, with the same conversion id.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "dependentRequired": {"value": ["currency"]},
            "examples": [
                {
                    "conversion_id": "cnv_01JPB8D3F5H7K9M1P3R5T7V9X1",
                    "conversion_name": "order_completed",
                    "profile_id": "prf_01JPB6W3K8N2X4Q7R9T0V5Y1ZC",
                    "value": "129.90",
                    "currency": "CNY",
                    "message_id": "msg_01JPB6W5D2F4H6K8M0P2R4T6V8",
                    "journey": {
                        "journey_id": "jrn_winback",
                        "journey_version": 4,
                        "node_id": "node_send_coupon",
                    },
                    "template_id": "tpl_winback_coupon",
                    "variant_id": "var_b_short_subject",
                    "channel": "email",
                    "attribution_model": "last_touch",
                    "credit_share": 1.0,
                    "occurred_at": "2025-03-14T13:05:12Z",
                },
                {
                    "conversion_id": "cnv_01JPB9E4G6J8L0N2Q4S6U8W0Y2",
                    "conversion_name": "signed_up",
                    "profile_id": "prf_01JPB6W3K8N2X4Q7R9T0V5Y1ZC",
                    "message_id": "msg_01JPB5C1E3G5J7L9N1Q3S5U7W9",
                    "channel": "sms",
                    "attribution_model": "linear",
                    "credit_share": 0.5,
                    "occurred_at": "2025-03-10T18:44:00+08:00",
                },
            ],
        }
    )

    event_type = "conversion.attributed"
    topic = topics.ATTRIBUTION

    conversion_id: EntityId = Field(description="The conversion; shared by all its credits.")
    conversion_name: Name = Field(
        description="The conversion definition that matched, e.g. `order_completed`."
    )
    profile_id: ProfileId = Field(description="The profile that converted.")
    value: Amount | None = Field(
        default=None,
        description="What the conversion was worth, as a decimal string; needs `currency`.",
    )
    currency: Currency | None = Field(
        default=None, description="The ISO 4217 code of `value`, e.g. `CNY`."
    )
    message_id: EntityId = Field(description="The credited message (dispatch's message id).")
    journey: JourneyRef | None = Field(default=None, description="The credited journey step.")
    template_id: EntityId | None = Field(default=None, description="The credited template.")
    variant_id: EntityId | None = Field(default=None, description="The credited variant.")
    channel: Channel | None = Field(default=None, description="The credited message's channel.")
    attribution_model: AttributionModel = Field(
        description="The attribution model that assigned the credit."
    )
    credit_share: float = Field(
        gt=0, le=1, description="The share of the conversion credited to this message, in (0, 1]."
    )
    occurred_at: EventTime = Field(description="Event time of the conversion.")

    @model_validator(mode="after")
    def _value_has_currency(self) -> Self:
        if self.value is not None and self.currency is None:
            raise ValueError("a conversion value needs a currency")
        return self

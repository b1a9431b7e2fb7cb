"""Conversion definitions: which behaviour counts as a conversion, what it is worth, how it is
credited, and the checks that decide whether one behaviour matches."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    model_validator,
)

from libs.common.events.conversion import AttributionModel
from libs.common.storable import Storable
from libs.common.values import DurationRules, lookup, number, parse_duration, test_value

Op = Literal["eq", "neq", "gt", "gte", "lt", "lte", "in", "contains", "exists"]
TouchType = Literal["message.sent", "message.delivered", "message.opened", "message.clicked"]
TOUCH_TYPES: tuple[TouchType, ...] = (
    "message.sent",
    "message.delivered",
    "message.opened",
    "message.clicked",
)

_CURRENCY = re.compile(r"^[A-Z]{3}$")
_OUT_OF_RANGE = "a duration must be longer than zero and at most ten years"
_DURATIONS = DurationRules(
    longest=timedelta(days=3660),
    malformed="not an ISO 8601 duration in weeks, days and time (such as P7D, PT12H)",
    not_positive=_OUT_OF_RANGE,
    too_long=_OUT_OF_RANGE,
)


def format_duration(duration: timedelta) -> str:
    """The ISO 8601 text of a duration, in days and seconds (`P7D`, `P1DT3600S`)."""
    days, seconds = duration.days, duration.seconds + duration.microseconds / 1e6
    time = f"T{seconds:g}S" if seconds else ""
    return f"P{days}D{time}" if days else f"P{time}"


Duration = Annotated[
    timedelta,
    BeforeValidator(partial(parse_duration, rules=_DURATIONS)),
    PlainSerializer(format_duration, return_type=str),
]
_Text = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class PropertyFilter(BaseModel):
    """One test on a behaviour's property: `{"property": "category", "op": "eq", "value": "tea"}`.

    `property` may be a dotted path into nested objects (`product.sku`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    property: Annotated[_Text, Storable]
    op: Op = "eq"
    value: Annotated[Any, Storable] = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> Self:
        if self.op == "exists":
            if self.value is not None:
                raise ValueError("`exists` takes no value")
        elif self.value is None:
            raise ValueError(f"`{self.op}` needs a value")
        elif self.op == "in" and not (isinstance(self.value, list) and self.value):
            raise ValueError("`in` needs a non-empty list")
        elif self.op in {"gt", "gte", "lt", "lte"} and not _orderable(self.value):
            raise ValueError(f"`{self.op}` compares with a number or a string")
        elif self.op == "contains" and not isinstance(self.value, str | int | float | bool):
            raise ValueError("`contains` looks for a string, number or boolean")
        return self

    def passes(self, properties: dict[str, Any]) -> bool:
        """Whether the behaviour's properties pass this test (JSON semantics: `true` is not 1)."""
        return test_value(self.op, lookup(properties, self.property), self.value)


class ConversionDefinition(BaseModel):
    """What makes a behaviour a conversion and how it is credited."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[_Text, Storable] = Field(
        description="The conversion's name, carried by `conversion.attributed`."
    )
    event: Annotated[_Text, Storable] = Field(description="The behaviour's event name.")
    filter: list[PropertyFilter] = Field(
        default_factory=list,
        max_length=50,
        description="Every test must pass for the behaviour to convert.",
    )
    value_property: Annotated[_Text, Storable] | None = Field(
        default=None, description="The property holding the conversion's value, e.g. `revenue`."
    )
    currency_property: Annotated[_Text, Storable] | None = Field(
        default=None, description="The property holding the value's ISO 4217 currency."
    )
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] | None = Field(
        default=None, description="A fixed currency for every conversion of this definition."
    )
    window: Duration = Field(
        default=timedelta(days=7),
        description="Touchpoints longer than this before the conversion do not count (ISO 8601).",
    )
    attribution_model: AttributionModel = Field(
        default="last_touch", description="The rule that shares out the credit."
    )
    half_life: Duration = Field(
        default=timedelta(days=1),
        description="For `time_decay`: a touch this much older earns half the weight.",
    )
    touch_types: list[TouchType] = Field(
        default_factory=lambda: list(TOUCH_TYPES),
        min_length=1,
        description="The outcomes that make a message a touchpoint.",
    )

    @model_validator(mode="after")
    def _one_currency_source(self) -> Self:
        if self.currency is not None and self.currency_property is not None:
            raise ValueError("give `currency` or `currency_property`, not both")
        if (self.currency or self.currency_property) and self.value_property is None:
            raise ValueError("a currency needs a `value_property`")
        if len(set(self.touch_types)) != len(self.touch_types):
            raise ValueError("`touch_types` lists an outcome twice")
        return self

    def matches(self, event: str, properties: dict[str, Any]) -> bool:
        return event == self.event and all(test.passes(properties) for test in self.filter)

    def worth(self, properties: dict[str, Any]) -> tuple[Decimal | None, str | None]:
        """The conversion's value and currency; both None unless both are present and valid."""
        if self.value_property is None:
            return None, None
        value = _amount(lookup(properties, self.value_property))
        currency = self.currency
        if currency is None and self.currency_property is not None:
            found = lookup(properties, self.currency_property)
            currency = found.upper() if isinstance(found, str) else None
        if value is None or currency is None or not _CURRENCY.match(currency):
            return None, None
        return value, currency


def conversion_id(behaviour_id: str, definition_id: str) -> str:
    """The same behaviour and definition always name the same conversion, so a redelivered or
    re-emitted behaviour is recognised rather than credited again."""
    digest = hashlib.sha256(f"{behaviour_id}\x00{definition_id}".encode()).hexdigest()
    return f"cnv_{digest[:32]}"


def _amount(value: Any) -> Decimal | None:
    """A non-negative finite decimal from a JSON number or numeric string, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount < 0 or amount > Decimal("1e18"):
        return None
    return amount


def _orderable(value: Any) -> bool:
    """A string, or a finite JSON number: what `gt`, `gte`, `lt` and `lte` compare with."""
    if isinstance(value, str):
        return True
    amount = number(value)
    return amount is not None and amount.is_finite()

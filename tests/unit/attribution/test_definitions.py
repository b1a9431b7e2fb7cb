"""Conversion definitions: validation, property filters, value and currency, deterministic ids."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from services.attribution.definitions import ConversionDefinition, conversion_id


def definition(**fields: Any) -> ConversionDefinition:
    return ConversionDefinition.model_validate(
        {"name": "purchase", "event": "order_completed", **fields}
    )


def test_defaults_are_last_touch_over_seven_days_and_all_touch_types() -> None:
    d = definition()
    assert d.attribution_model == "last_touch"
    assert d.window == timedelta(days=7)
    assert d.touch_types == [
        "message.sent",
        "message.delivered",
        "message.opened",
        "message.clicked",
    ]


def test_durations_round_trip_through_json() -> None:
    d = definition(window="PT36H", half_life="P1W")
    again = ConversionDefinition.model_validate_json(d.model_dump_json())
    assert again == d
    assert again.window == timedelta(hours=36)


@pytest.mark.parametrize("window", ["P", "P1M", "7 days", "P0D", "P-1D", 7, "P999999W"])
def test_bad_windows_are_refused(window: Any) -> None:
    with pytest.raises(ValidationError):
        definition(window=window)


def test_a_window_reads_weeks_days_and_time() -> None:
    window = definition(window="P1W2DT3H4M5S").window
    assert window == timedelta(days=9, hours=3, minutes=4, seconds=5)


@pytest.mark.parametrize(
    ("test", "properties", "matches"),
    [
        ({"property": "category", "value": "tea"}, {"category": "tea"}, True),
        ({"property": "category", "op": "neq", "value": "tea"}, {}, True),
        ({"property": "revenue", "op": "gt", "value": 100}, {"revenue": 129.9}, True),
        ({"property": "revenue", "op": "lte", "value": 100}, {"revenue": 129.9}, False),
        ({"property": "revenue", "op": "gte", "value": 1}, {"revenue": "5"}, False),
        ({"property": "plan", "op": "in", "value": ["a", "b"]}, {"plan": "b"}, True),
        ({"property": "skus", "op": "contains", "value": "x"}, {"skus": ["x", "y"]}, True),
        ({"property": "coupon", "op": "exists"}, {"coupon": None}, False),
        ({"property": "product.sku", "value": "s1"}, {"product": {"sku": "s1"}}, True),
        ({"property": "flag", "value": 1}, {"flag": True}, False),
    ],
)
def test_property_filters(test: dict[str, Any], properties: dict[str, Any], matches: bool) -> None:
    assert definition(filter=[test]).matches("order_completed", properties) is matches


def test_another_event_never_matches() -> None:
    assert not definition().matches("page", {})


@pytest.mark.parametrize(
    "test",
    [
        {"property": "a", "op": "exists", "value": 1},
        {"property": "a", "op": "in", "value": []},
        {"property": "a", "op": "gt", "value": [1]},
        {"property": "a", "op": "eq"},
        {"property": "a", "op": "like", "value": "x"},
    ],
)
def test_bad_filters_are_refused(test: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        definition(filter=[test])


def test_value_and_currency_come_from_properties_or_a_fixed_currency() -> None:
    by_property = definition(value_property="revenue", currency_property="currency")
    assert by_property.worth({"revenue": 129.9, "currency": "cny"}) == (Decimal("129.9"), "CNY")
    assert by_property.worth({"revenue": 129.9}) == (None, None)
    assert by_property.worth({"revenue": -1, "currency": "CNY"}) == (None, None)
    fixed = definition(value_property="revenue", currency="EUR")
    assert fixed.worth({"revenue": "12.50"}) == (Decimal("12.50"), "EUR")


def test_a_currency_source_needs_a_value_and_only_one_source() -> None:
    with pytest.raises(ValidationError):
        definition(currency="EUR")
    with pytest.raises(ValidationError):
        definition(value_property="r", currency="EUR", currency_property="c")


def test_conversion_ids_are_deterministic_per_behaviour_and_definition() -> None:
    assert conversion_id("m1", "d1") == conversion_id("m1", "d1")
    assert conversion_id("m1", "d1") != conversion_id("m1", "d2")
    assert conversion_id("m1", "d1") != conversion_id("m2", "d1")

"""What cannot be stored or sent is refused by the one check every service's models use."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import BaseModel, ValidationError

from libs.common.storable import Storable, storable_text, unstorable


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({"name": "a\x00b"}, "NUL"),
        (["ok", {"deep": ["\ud800"]}], "surrogates"),
        ({"\x00key": 1}, "NUL"),
        ({"n": 2**63}, "64 bits"),
        ({"n": -(2**63) - 1}, "64 bits"),
        ({"x": float("nan")}, "finite"),
        ([float("inf")], "finite"),
    ],
)
def test_unstorable_values_are_named_with_the_reason(value: Any, reason: str) -> None:
    found = unstorable(value)
    assert found is not None and reason in found


def test_ordinary_json_is_storable() -> None:
    value = {"name": "李伟 🍵", "n": 2**63 - 1, "low": -(2**63), "ok": True, "x": 1.5, "l": [None]}
    assert unstorable(value) is None
    assert storable_text("tab\tand newline\n") and not storable_text("\x00")


def test_a_model_field_with_storable_answers_a_validation_error() -> None:
    class Template(BaseModel):
        variables: Annotated[dict[str, Any], Storable]

    assert Template(variables={"a": 1}).variables == {"a": 1}
    with pytest.raises(ValidationError, match="integers must fit in 64 bits"):
        Template(variables={"a": 10**30})

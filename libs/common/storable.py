"""What every service stores and sends must be storable: PostgreSQL keeps no NUL in text, a lone
surrogate has no UTF-8 to write, and orjson writes no integer beyond 64 bits. Request models check
it with `Storable` (any JSON value) or `StorableText`, so such input is a 422 naming the field,
never a 500 from the database or the encoder."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator

_INT64 = range(-(2**63), 2**63)


def storable_text(text: str) -> bool:
    """No NUL, and encodable as UTF-8 (no lone surrogate)."""
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def unstorable(value: Any) -> str | None:
    """Why a JSON value cannot be stored and sent, or None when it can."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str) and not storable_text(item):
            return "text cannot contain NUL characters or lone surrogates"
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int) and item not in _INT64:
            return "integers must fit in 64 bits"
        elif isinstance(item, float) and not math.isfinite(item):
            return "numbers must be finite"
    return None


def storable(value: Any) -> Any:
    """A pydantic after-validator: the value, or a ValueError saying what cannot be stored."""
    reason = unstorable(value)
    if reason is not None:
        raise ValueError(reason)
    return value


Storable = AfterValidator(storable)
StorableText = Annotated[str, Storable]

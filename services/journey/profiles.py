"""What journey adds to the shared profile read model (libs.common.profiles): the zone a
profile's `timezone` trait names, for waits until a time of day and engagement hours."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone_named(name: str | None) -> ZoneInfo:
    """The IANA zone of that name; UTC when there is none or it does not exist."""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo("UTC")

"""Charts drawn on the server: where each bar goes, for the templates to write out as SVG.

Pure geometry, no markup: the templates render the shapes (escaping every label), so a chart
needs no script and no library, and each has a title, a description and a table beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final

WIDTH: Final = 640
_LABEL_WIDTH: Final = 150
_VALUE_ROOM: Final = 70
_BAR_HEIGHT: Final = 11
_BAR_GAP: Final = 2
_GROUP_GAP: Final = 12
_LEGEND_HEIGHT: Final = 22
_COLUMN_HEIGHT: Final = 160
_AXIS_ROOM: Final = 56
_DATE_ROOM: Final = 26


@dataclass(frozen=True)
class Bar:
    series: int
    label: str
    text: str
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Group:
    label: str
    y: float
    bars: list[Bar]


@dataclass(frozen=True)
class Tick:
    text: str
    x: float
    y: float


@dataclass(frozen=True)
class Chart:
    """A chart's shapes in a WIDTH-wide view box: bars in groups, legend, axis ticks."""

    title: str
    description: str
    height: float
    series: list[str]
    groups: list[Group]
    ticks: list[Tick]


def grouped_bars(
    title: str,
    series: Sequence[str],
    groups: Sequence[tuple[str, Sequence[float]]],
    shown: Callable[[float], str] = lambda value: f"{value:g}",
) -> Chart:
    """Horizontal bars, one group per row (a channel, say) and one bar per series in it (sent,
    delivered…): every bar on one scale, so a group reads as a funnel and groups compare."""
    largest = max((value for _, values in groups for value in values), default=0.0)
    room = WIDTH - _LABEL_WIDTH - _VALUE_ROOM
    group_height = len(series) * (_BAR_HEIGHT + _BAR_GAP) + _GROUP_GAP
    laid_out = []
    for index, (label, values) in enumerate(groups):
        top = _LEGEND_HEIGHT + index * group_height
        bars = [
            Bar(
                series=position,
                label=f"{label}: {series[position]} {shown(value)}",
                text=shown(value),
                x=_LABEL_WIDTH,
                y=top + position * (_BAR_HEIGHT + _BAR_GAP),
                width=_scaled(value, largest, room),
                height=_BAR_HEIGHT,
            )
            for position, value in enumerate(values)
        ]
        laid_out.append(Group(label=label, y=top + _BAR_HEIGHT, bars=bars))
    return Chart(
        title=title,
        description=_described(series, groups, shown),
        height=_LEGEND_HEIGHT + len(groups) * group_height,
        series=list(series),
        groups=laid_out,
        ticks=[],
    )


def columns_by_day(
    title: str, days: Sequence[tuple[date, float]], shown: Callable[[float], str]
) -> Chart:
    """One column per day, in order, on a scale from 0 to the largest day; the largest and half
    of it marked on the axis, and the first, middle and last day under it."""
    largest = max((value for _, value in days), default=0.0)
    room = WIDTH - _AXIS_ROOM
    step = room / max(len(days), 1)
    bars = []
    for index, (day, value) in enumerate(days):
        height = _scaled(value, largest, _COLUMN_HEIGHT)
        bars.append(
            Bar(
                series=0,
                label=f"{day.isoformat()}: {shown(value)}",
                text=shown(value),
                x=_AXIS_ROOM + index * step + step * 0.1,
                y=_LEGEND_HEIGHT + _COLUMN_HEIGHT - height,
                width=step * 0.8,
                height=height,
            )
        )
    base = _LEGEND_HEIGHT + _COLUMN_HEIGHT
    ticks = [
        Tick(shown(largest * share), _AXIS_ROOM - 6, base - _COLUMN_HEIGHT * share + 4)
        for share in (0.0, 0.5, 1.0)
        if largest > 0 or share == 0.0
    ]
    for index in sorted({0, len(days) // 2, len(days) - 1}):
        if 0 <= index < len(days):
            ticks.append(
                Tick(days[index][0].isoformat(), _AXIS_ROOM + (index + 0.5) * step, base + 16)
            )
    total = sum(value for _, value in days)
    description = (
        f"{len(days)} days from {days[0][0].isoformat()} to {days[-1][0].isoformat()}; "
        f"{shown(total)} in all, {shown(largest)} on the best day."
        if days
        else "No days."
    )
    return Chart(
        title=title,
        description=description,
        height=base + _DATE_ROOM,
        series=[title],
        groups=[Group(label="", y=0, bars=bars)],
        ticks=ticks,
    )


def _scaled(value: float, largest: float, room: float) -> float:
    if largest <= 0 or value <= 0:
        return 0.0
    return round(room * value / largest, 2)


def _described(
    series: Sequence[str],
    groups: Sequence[tuple[str, Sequence[float]]],
    shown: Callable[[float], str],
) -> str:
    """What the bars say, in words, for a screen reader."""
    if not groups:
        return "Nothing to show."
    return "; ".join(
        f"{label}: "
        + ", ".join(f"{name} {shown(v)}" for name, v in zip(series, values, strict=True))
        for label, values in groups
    )

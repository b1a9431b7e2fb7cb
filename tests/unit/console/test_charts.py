"""Where the server-drawn charts put their bars."""

from __future__ import annotations

from datetime import date

from services.console.charts import WIDTH, columns_by_day, grouped_bars


def test_grouped_bars_share_one_scale_so_a_group_reads_as_a_funnel() -> None:
    chart = grouped_bars(
        "Channels",
        ["sent", "clicked"],
        [("email", [100.0, 25.0]), ("sms", [50.0, 0.0])],
    )
    email, sms = chart.groups
    assert email.bars[0].width > 0
    assert email.bars[1].width == email.bars[0].width / 4
    assert sms.bars[0].width == email.bars[0].width / 2
    assert sms.bars[1].width == 0
    assert max(bar.x + bar.width for g in chart.groups for bar in g.bars) < WIDTH
    assert sms.bars[0].y > email.bars[1].y
    assert chart.description == "email: sent 100, clicked 25; sms: sent 50, clicked 0"
    assert email.bars[1].label == "email: clicked 25"


def test_an_empty_chart_says_so_and_draws_nothing() -> None:
    chart = grouped_bars("Nothing", ["sent"], [])
    assert chart.groups == []
    assert chart.description == "Nothing to show."


def test_columns_by_day_rise_with_their_value_and_mark_the_axis() -> None:
    days = [(date(2026, 12, d), v) for d, v in ((1, 10.0), (2, 0.0), (3, 40.0))]
    chart = columns_by_day("Revenue", days, lambda v: f"{v:.0f}")
    first, empty, best = chart.groups[0].bars
    assert best.height == 4 * first.height
    assert empty.height == 0
    assert best.y < first.y
    assert first.x < empty.x < best.x
    assert [t.text for t in chart.ticks] == [
        "0",
        "20",
        "40",
        "2026-12-01",
        "2026-12-02",
        "2026-12-03",
    ]
    assert (
        chart.description == "3 days from 2026-12-01 to 2026-12-03; 50 in all, 40 on the best day."
    )

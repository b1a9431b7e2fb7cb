"""Insights found in constructed rollups, and not found where the evidence is missing."""

from __future__ import annotations

from services.attribution.insights import (
    ChannelStats,
    HourStats,
    VariantStats,
    lagging_channels,
    lagging_hours,
    probability_best,
    suppressing_caps,
    winning_variants,
)


def test_a_clearly_better_variant_is_reported_with_its_probability() -> None:
    variants = [
        VariantStats("tpl", "a", sent=1000, clicked=50, converted=5),
        VariantStats("tpl", "b", sent=1000, clicked=120, converted=5),
    ]
    found = winning_variants(variants, min_trials=100, probability=0.95)
    assert [(i.kind, i.evidence["variant_id"], i.evidence["metric"]) for i in found] == [
        ("variant_wins", "b", "click")
    ]
    assert found[0].probability >= 0.95
    assert "'b'" in found[0].message


def test_equal_variants_are_not_reported() -> None:
    variants = [
        VariantStats("tpl", "a", sent=1000, clicked=100, converted=10),
        VariantStats("tpl", "b", sent=1000, clicked=100, converted=10),
    ]
    assert winning_variants(variants, min_trials=100, probability=0.95) == []


def test_variants_with_too_few_trials_are_not_judged() -> None:
    variants = [
        VariantStats("tpl", "a", sent=50, clicked=0, converted=0),
        VariantStats("tpl", "b", sent=50, clicked=40, converted=0),
    ]
    assert winning_variants(variants, min_trials=100, probability=0.95) == []


def test_probability_best_is_deterministic_and_sums_to_one() -> None:
    arms = [(10.0, 100.0), (20.0, 100.0), (15.0, 100.0)]
    first, second = probability_best(arms), probability_best(arms)
    assert first == second
    assert abs(sum(first) - 1.0) < 1e-9
    assert max(range(3), key=first.__getitem__) == 1


def test_a_channel_far_below_the_others_is_reported_with_its_numbers() -> None:
    channels = [
        ChannelStats(
            "email", sent=2000, clicked=200, suppressed=0, suppressed_frequency_cap=0, failed=0
        ),
        ChannelStats(
            "sms", sent=2000, clicked=40, suppressed=0, suppressed_frequency_cap=0, failed=0
        ),
    ]
    found = lagging_channels(channels, min_trials=100, confidence=0.95)
    assert [i.evidence["channel"] for i in found] == ["sms"]
    assert found[0].evidence["click_rate"] == 0.02
    assert found[0].probability > 0.99


def test_channels_alike_are_not_reported() -> None:
    channels = [
        ChannelStats(
            "email", sent=2000, clicked=200, suppressed=0, suppressed_frequency_cap=0, failed=0
        ),
        ChannelStats(
            "sms", sent=2000, clicked=195, suppressed=0, suppressed_frequency_cap=0, failed=0
        ),
    ]
    assert lagging_channels(channels, min_trials=100, confidence=0.95) == []


def test_caps_suppressing_above_the_threshold_are_reported() -> None:
    channels = [
        ChannelStats(
            "email", sent=600, clicked=0, suppressed=400, suppressed_frequency_cap=350, failed=0
        ),
        ChannelStats(
            "sms", sent=900, clicked=0, suppressed=100, suppressed_frequency_cap=100, failed=0
        ),
    ]
    found = suppressing_caps(channels, min_trials=100, max_share=0.2)
    assert [(i.evidence["channel"], i.evidence["suppressed_share"]) for i in found] == [
        ("email", 0.35)
    ]


def test_a_send_hour_far_below_the_others_is_reported_and_like_hours_are_not() -> None:
    hours = [HourStats(hour, sent=400, clicked=60) for hour in range(8, 20)]
    hours.append(HourStats(3, sent=400, clicked=12))  # 3% at 03:00 UTC against 15%
    found = lagging_hours(hours, min_trials=100, confidence=0.95)
    assert [(i.kind, i.evidence["hour_utc"]) for i in found] == [("hour_underperforms", 3)]
    assert found[0].evidence["click_rate"] == 12 / 400
    assert "03:00 UTC" in found[0].message
    alike = [HourStats(hour, sent=400, clicked=60 + hour % 3) for hour in range(24)]
    assert lagging_hours(alike, min_trials=100, confidence=0.95) == []
    few = [HourStats(3, sent=50, clicked=0), HourStats(9, sent=5000, clicked=900)]
    assert lagging_hours(few, min_trials=100, confidence=0.95) == []

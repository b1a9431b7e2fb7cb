"""Send-time model: shrinkage, per-send rates, the mixture of daily profiles, exploration, and
scheduling across zones and DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from services.journey.timing import (
    HOURS,
    HourPrior,
    best_hour,
    best_time_within,
    choose_hours,
    fit_level_shape,
    fit_prior,
    fit_profiles,
    fit_strength,
    population_curve,
    posterior_means,
    profile_posteriors,
    smooth_hours,
)

DAY = timedelta(hours=24)


def _evening_curve() -> np.ndarray:
    """A population that engages most at 20:00 and least at night."""
    hours = np.arange(HOURS)
    distance = np.minimum(np.abs(hours - 20), HOURS - np.abs(hours - 20))
    curve: np.ndarray = 0.05 + 0.05 * np.exp(-0.5 * (distance / 2.0) ** 2)
    return curve


def _peak(centre: int, height: float, width: float) -> np.ndarray:
    """A daily profile: 0.05 per send, plus a peak at `centre` (circular)."""
    hours = np.arange(HOURS)
    distance = np.minimum(np.abs(hours - centre), HOURS - np.abs(hours - centre))
    profile: np.ndarray = 0.05 + height * np.exp(-0.5 * (distance / width) ** 2)
    return profile


def _morning_and_evening_people(
    rng: np.random.Generator, morning_share: float = 0.5
) -> tuple[np.ndarray, ...]:
    """600 people peaking at 08:00 (`morning_share` of them) or at 20:00; 40 sends at 10:00 and 2
    at each hour, so raw opens point everyone to 10:00 and only rates per send tell them apart."""
    people = 600
    morning = np.arange(people) < round(people * morning_share)
    rates = np.where(morning[:, None], _peak(8, 0.2, 1.5), _peak(20, 0.2, 1.5))
    sends = np.full((people, HOURS), 2.0)
    sends[:, 10] += 40
    opens = rng.binomial(sends.astype(np.int64), rates).astype(np.float64)
    return sends, opens, morning


def _scores(best: int, second: int | None = None) -> np.ndarray:
    scores = np.zeros(HOURS)
    scores[best] = 2.0
    if second is not None:
        scores[second] = 1.0
    return scores


def test_smoothing_is_circular_and_keeps_totals() -> None:
    counts = np.zeros(HOURS)
    counts[23] = 10.0
    smoothed = smooth_hours(counts, 1.0)
    assert smoothed.sum() == pytest.approx(10.0)
    assert smoothed[0] == pytest.approx(smoothed[22])
    assert smoothed[0] > smoothed[12]
    assert np.array_equal(smooth_hours(counts, 0.0), counts)


def test_population_curve_gives_hours_never_sent_the_overall_rate() -> None:
    sends = np.zeros((2, HOURS))
    opens = np.zeros((2, HOURS))
    sends[:, 10], opens[:, 10] = 500, 50
    curve = population_curve(sends, opens, bandwidth=0.0)
    assert curve[10] == pytest.approx(0.1, abs=0.001)
    assert curve[3] == pytest.approx(0.1, abs=0.001)


def test_strength_is_recovered_from_beta_binomial_counts() -> None:
    rng = np.random.default_rng(7)
    mean, strength = 0.1, 30.0
    rates = rng.beta(strength * mean, strength * (1 - mean), size=5000)
    sends = np.full(5000, 60.0)
    opens = rng.binomial(60, rates).astype(np.float64)
    assert fit_strength(sends, opens, mean) == pytest.approx(strength, rel=0.2)


def test_one_send_is_pulled_to_the_population_curve() -> None:
    curve = _evening_curve()
    prior = HourPrior(curve, strength=40.0, level_shape=5.0)
    sends, opens = np.zeros(HOURS), np.zeros(HOURS)
    sends[3], opens[3] = 1, 1
    means = posterior_means(sends, opens, prior)
    level = (1 + 5.0) / (curve[3] + 5.0)
    assert np.abs(means - level * curve).max() < 0.01
    assert int(np.argmax(means)) == 20


def test_strong_evidence_away_from_the_usual_hour_wins() -> None:
    prior = HourPrior(np.full(HOURS, 0.08), strength=30.0, level_shape=5.0)
    sends, opens = np.zeros(HOURS), np.zeros(HOURS)
    sends[10], opens[10] = 120, 9
    sends[19], opens[19] = 30, 12
    choice = best_hour(sends, opens, prior, np.random.default_rng(0), explore_share=0.0)
    assert (choice.hour, choice.explored, choice.probability) == (19, False, 1.0)


def test_rates_per_send_beat_raw_opens_on_a_skewed_history() -> None:
    rng = np.random.default_rng(3)
    people = 300
    sends, opens = np.zeros((people, HOURS)), np.zeros((people, HOURS))
    sends[:, 10] = 200
    opens[:, 10] = rng.binomial(200, 0.08, people)
    sends[:, 20] = 25
    opens[:, 20] = rng.binomial(25, 0.30, people)
    # Only 10:00 and 20:00 were ever sent, so 19:00 to 21:00 are near-tied for the mixture's
    # profiles (smoothing spreads 20:00 over them): the claim is the evening, not 10:00.
    prior = fit_prior(sends, opens, sends.sum(axis=0), opens.sum(axis=0))
    by_rate = np.argmax(posterior_means(sends, opens, prior), axis=1)
    by_opens = np.argmax(opens, axis=1)
    assert np.mean(np.abs(by_rate - 20) <= 1) > 0.9
    assert np.mean(by_opens == 20) < 0.2
    single = fit_prior(sends, opens, sends.sum(axis=0), opens.sum(axis=0), profiles=1)
    assert np.mean(np.argmax(posterior_means(sends, opens, single), axis=1) == 20) > 0.9


def test_the_mixture_tells_morning_from_evening_people() -> None:
    sends, opens, morning = _morning_and_evening_people(np.random.default_rng(5))
    untargeted = sends.sum(axis=0), opens.sum(axis=0)
    prior = fit_prior(sends, opens, *untargeted)
    peaks = set(np.argmax(prior.daily_profiles()[0], axis=1).tolist())
    assert peaks & {7, 8, 9} and peaks & {19, 20, 21}
    best = np.argmax(posterior_means(sends, opens, prior), axis=1)
    assert np.mean(np.abs(best[morning] - 8) <= 1) > 0.75
    assert np.mean(np.abs(best[~morning] - 20) <= 1) > 0.85
    # One curve for everyone is the evening's: it sends the morning people there too.
    single = fit_prior(sends, opens, *untargeted, profiles=1)
    best_single = np.argmax(posterior_means(sends, opens, single), axis=1)
    assert np.mean(np.abs(best_single[morning] - 8) <= 1) < 0.2


def test_em_recovers_the_shares_of_two_planted_profiles() -> None:
    sends, opens, _ = _morning_and_evening_people(np.random.default_rng(8), morning_share=0.25)
    # Shares come out a few points toward equal: smoothing blurs the profiles, so people are
    # assigned less sharply than they are planted. Two EM iterations would leave them near 0.5.
    curve = population_curve(sends, opens)
    level_shape = fit_level_shape(sends, opens, curve)
    shapes, weights = fit_profiles(sends, opens, curve, level_shape, profiles=2)
    by_peak = dict(zip(np.argmax(shapes, axis=1).tolist(), weights.tolist(), strict=True))
    assert set(by_peak) == {8, 20}
    assert by_peak[8] == pytest.approx(0.25, abs=0.06)
    assert by_peak[20] == pytest.approx(0.75, abs=0.06)


def test_a_person_goes_to_the_peak_of_the_profile_their_counts_fit() -> None:
    profiles = np.stack([_peak(8, 0.1, 2.0), _peak(20, 0.1, 2.0)])
    weights = np.array([0.3, 0.7])
    mixture = HourPrior(weights @ profiles, 40.0, 5.0, profiles, weights)
    single = HourPrior(weights @ profiles, 40.0, 5.0)
    # Opened 3 of 10 at 10:00, none of 10 at 18:00: the morning profile explains it, and its
    # peak is 08:00, where the person was never sent.
    sends, opens = np.zeros(HOURS), np.zeros(HOURS)
    sends[10], opens[10] = 10, 3
    sends[18] = 10
    shares, _ = profile_posteriors(sends, opens, mixture)
    assert shares[0] > 0.7
    assert int(np.argmax(posterior_means(sends, opens, mixture))) == 8
    assert int(np.argmax(posterior_means(sends, opens, single))) == 20
    nobody = np.zeros(HOURS)
    assert int(np.argmax(posterior_means(nobody, nobody, mixture))) == 20


def test_one_profile_is_the_single_curve_model() -> None:
    sends, opens, _ = _morning_and_evening_people(np.random.default_rng(2))
    prior = fit_prior(sends, opens, sends.sum(axis=0), opens.sum(axis=0), profiles=1)
    shapes, weights = prior.daily_profiles()
    assert np.allclose(shapes, prior.curve[None, :]) and np.allclose(weights, [1.0])
    plain = HourPrior(prior.curve, prior.strength, prior.level_shape)
    assert np.allclose(posterior_means(sends, opens, prior), posterior_means(sends, opens, plain))
    level = (opens[0].sum() + plain.level_shape) / (sends[0] @ plain.curve + plain.level_shape)
    nothing_smoothed = posterior_means(sends[0], opens[0], plain, bandwidth=0.0)
    assert nothing_smoothed[3] == pytest.approx(
        (plain.strength * level * plain.curve[3] + opens[0, 3]) / (plain.strength + sends[0, 3])
    )


def test_nobody_yet_is_one_flat_profile() -> None:
    none = np.zeros((0, HOURS))
    prior = fit_prior(none, none, np.zeros(HOURS), np.zeros(HOURS))
    shapes, weights = prior.daily_profiles()
    assert shapes.shape == (1, HOURS) and np.ptp(shapes) == 0.0 and weights.tolist() == [1.0]
    curve = np.full(HOURS, 0.1)
    fitted, _ = fit_profiles(np.zeros((3, HOURS)), np.zeros((3, HOURS)), curve, 5.0)
    assert np.allclose(fitted, curve[None, :])
    with pytest.raises(ValueError):
        fit_profiles(none, none, curve, 5.0, profiles=0)


def test_exploration_share_and_logged_probabilities() -> None:
    people = 40_000
    prior = HourPrior(_evening_curve(), strength=20.0, level_shape=5.0)
    counts = np.zeros((people, HOURS))
    choices = choose_hours(counts, counts, prior, np.random.default_rng(11), explore_share=0.1)
    assert choices.explored.mean() == pytest.approx(0.1, abs=0.005)
    explored_hours = np.bincount(choices.hours[choices.explored], minlength=HOURS)
    assert explored_hours.min() > 0.6 * explored_hours.mean()
    exploit = choices.hours == 20
    assert np.mean(exploit) == pytest.approx(0.9 + 0.1 / HOURS, abs=0.005)
    assert np.allclose(choices.probabilities[exploit], 0.9 + 0.1 / HOURS)
    assert np.allclose(choices.probabilities[~exploit], 0.1 / HOURS)
    never = choose_hours(counts, counts, prior, np.random.default_rng(1), explore_share=0.0)
    assert not never.explored.any() and set(never.hours) == {20}


def test_counts_are_validated() -> None:
    prior = HourPrior(np.full(HOURS, 0.1), strength=10.0, level_shape=5.0)
    with pytest.raises(ValueError):
        posterior_means(np.ones(HOURS), np.full(HOURS, 2.0), prior)
    with pytest.raises(ValueError):
        posterior_means(np.ones(12), np.ones(12), prior)
    with pytest.raises(ValueError):
        best_hour(np.ones((2, HOURS)), np.ones((2, HOURS)), prior, np.random.default_rng(0))


def test_best_time_later_today_tomorrow_and_now() -> None:
    now = datetime(2025, 6, 2, 8, 30, tzinfo=UTC)
    assert best_time_within(now, "UTC", DAY, _scores(19)) == datetime(2025, 6, 2, 19, tzinfo=UTC)
    assert best_time_within(now, "UTC", DAY, _scores(7)) == datetime(2025, 6, 3, 7, tzinfo=UTC)
    assert best_time_within(now, "UTC", DAY, _scores(8)) == now


def test_a_short_window_takes_the_best_hour_inside_it() -> None:
    now = datetime(2025, 6, 2, 20, 15, tzinfo=UTC)
    scores = _scores(19, second=23)
    assert best_time_within(now, "UTC", timedelta(hours=6), scores) == datetime(
        2025, 6, 2, 23, tzinfo=UTC
    )


def test_best_time_in_local_hours_of_the_zone() -> None:
    now = datetime(2025, 6, 1, 0, 0, tzinfo=UTC)  # 05:30 in Kolkata, 20:00 the day before in NY
    assert best_time_within(now, "Asia/Kolkata", DAY, _scores(9)) == datetime(
        2025, 6, 1, 3, 30, tzinfo=UTC
    )
    assert best_time_within(now, "America/New_York", DAY, _scores(9)) == datetime(
        2025, 6, 1, 13, tzinfo=UTC
    )


def test_an_hour_skipped_by_dst_is_not_chosen_that_day() -> None:
    # New York springs forward on 2025-03-09: 02:00 local does not exist that day.
    now = datetime(2025, 3, 9, 5, 30, tzinfo=UTC)  # 00:30 EST
    scores = _scores(2, second=3)
    assert best_time_within(now, "America/New_York", DAY, scores) == datetime(
        2025, 3, 9, 7, tzinfo=UTC
    )  # 03:00 EDT
    assert best_time_within(now, "America/New_York", 2 * DAY, scores) == datetime(
        2025, 3, 10, 6, tzinfo=UTC
    )  # 02:00 EDT the next day


def test_an_hour_repeated_by_dst_is_taken_at_its_first_occurrence() -> None:
    # New York falls back on 2025-11-02: 01:00 local happens at 05:00 and again at 06:00 UTC.
    now = datetime(2025, 11, 2, 4, 30, tzinfo=UTC)  # 00:30 EDT
    zone = "America/New_York"
    assert best_time_within(now, zone, DAY, _scores(1)) == datetime(2025, 11, 2, 5, tzinfo=UTC)
    assert best_time_within(now, zone, DAY, _scores(2)) == datetime(2025, 11, 2, 7, tzinfo=UTC)
    during_second = datetime(2025, 11, 2, 6, 30, tzinfo=UTC)  # 01:30 EST
    assert best_time_within(during_second, zone, DAY, _scores(1)) == during_second


def test_europe_dst_change_keeps_local_hours() -> None:
    # London springs forward on 2025-03-30: 19:00 local is 18:00 UTC from then on.
    now = datetime(2025, 3, 29, 20, 0, tzinfo=UTC)
    assert best_time_within(now, "Europe/London", DAY, _scores(19)) == datetime(
        2025, 3, 30, 18, tzinfo=UTC
    )


def test_window_helper_rejects_naive_times_and_treats_unknown_zones_as_utc() -> None:
    with pytest.raises(ValueError):
        best_time_within(datetime(2025, 6, 2, 8), "UTC", DAY, _scores(9))
    with pytest.raises(ValueError):
        best_time_within(datetime(2025, 6, 2, 8, tzinfo=UTC), "UTC", timedelta(0), _scores(9))
    now = datetime(2025, 6, 2, 8, 30, tzinfo=UTC)
    assert best_time_within(now, "Mars/Olympus", DAY, _scores(19)) == datetime(
        2025, 6, 2, 19, tzinfo=UTC
    )
    assert best_time_within(now, None, DAY, _scores(19)) == datetime(2025, 6, 2, 19, tzinfo=UTC)

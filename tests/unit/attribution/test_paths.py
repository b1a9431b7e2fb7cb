"""The paths of a range: converting paths, null paths, and which range decides each."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from services.attribution.campaigns import CAMPAIGN_VISIT, CampaignTouch
from services.attribution.paths import (
    DEFAULT_LOOKBACK,
    Conversion,
    CreditRule,
    RangePaths,
    Span,
    Touchpoint,
    lookback,
    range_paths,
)

T0 = datetime(2025, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)
ALL_TYPES = frozenset({"message.sent", "message.clicked", CAMPAIGN_VISIT})
RULES = {"cnv": CreditRule(DAY, ALL_TYPES, DAY)}
EVERYTHING = Span(T0 - 10 * DAY, T0 + 10 * DAY)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def touch(
    message_id: str, hours: float, outcome: str = "message.sent", profile: str = "prf_1"
) -> tuple[str, Touchpoint]:
    return profile, Touchpoint(message_id, at(hours), outcome, "email", "jrn", "node", "tpl")


def conversion(hours: float, profile: str = "prf_1", definition: str = "cnv") -> Conversion:
    return Conversion(f"c_{profile}_{hours}", definition, profile, at(hours))


def paths_of(
    touches: Sequence[tuple[str, Touchpoint]],
    conversions: Sequence[Conversion],
    span: Span = EVERYTHING,
    campaigns: Sequence[CampaignTouch] = (),
    rules: dict[str, CreditRule] = RULES,
) -> RangePaths:
    return range_paths(span, rules, touches, campaigns, conversions)


def ids(touches: Sequence[Touchpoint]) -> list[str]:
    return [t.message_id for t in touches]


def test_a_converting_path_is_its_definitions_touches_in_its_window() -> None:
    rules = {"cnv": CreditRule(DAY, frozenset({"message.clicked", CAMPAIGN_VISIT}), DAY)}
    visit = CampaignTouch("ajs_1", "prf_1", at(-1), "paid_search", "google", "cpc", "spring")
    touches = [
        touch("old", -30, "message.clicked"),
        touch("sent_only", -5),
        touch("clicked", -3, "message.clicked"),
        touch("after", 1, "message.clicked"),
    ]
    paths = paths_of(touches, [conversion(0)], campaigns=[visit], rules=rules)
    [path] = paths.converting
    assert ids(path.touches) == ["clicked", "ajs_1"]
    assert path.touches[1] == Touchpoint("ajs_1", at(-1), CAMPAIGN_VISIT, "paid_search")


def test_a_message_is_one_touch_latest_before_a_conversion_first_when_unconverted() -> None:
    touches = [
        touch("m", -6),
        touch("m", -2, "message.clicked"),
        touch("n", 30),
        touch("n", 32, "message.clicked"),
    ]
    paths = paths_of(touches, [conversion(0)])
    assert [t.occurred_at for t in paths.converting[0].touches] == [at(-2)]
    assert [[t.occurred_at for t in run] for run in paths.null] == [[at(30)]]


def test_unconverted_touches_form_null_paths_cut_by_more_than_the_lookback() -> None:
    touches = [touch("a", 0), touch("b", 10), touch("c", 40), touch("d", 50), touch("e", 74)]
    paths = paths_of(touches, [])
    # 10 → 40 is more than a day; 50 → 74 is exactly one, which does not cut.
    assert [ids(run) for run in paths.null] == [["a", "b"], ["c", "d", "e"]]
    assert paths.converting == []


def test_touches_before_a_conversion_but_outside_its_window_are_a_null_path() -> None:
    paths = paths_of([touch("early", -30), touch("late", -2)], [conversion(0)])
    assert ids(paths.converting[0].touches) == ["late"]
    assert [ids(run) for run in paths.null] == [["early"]]


def test_paths_belong_to_the_range_in_which_they_were_decided() -> None:
    span = Span(at(24), at(72))
    touches = [
        touch("decided_in", 5, profile="prf_1"),  # null, decided at 29 h
        touch("still_open", 60, profile="prf_2"),  # null, decided at 84 h: after the range
        touch("decided_before", -10, profile="prf_3"),  # null, decided at 14 h
        touch("converted_before", 15, profile="prf_4"),  # converted at 20 h: neither
        touch("converting", 28, profile="prf_5"),
    ]
    conversions = [conversion(20, "prf_4"), conversion(30, "prf_5")]
    paths = paths_of(touches, conversions, span)
    assert [ids(run) for run in paths.null] == [["decided_in"]]
    assert [ids(p.touches) for p in paths.converting] == [["converting"]]


def test_conversions_without_a_rule_are_left_out_and_so_are_their_touches_paths() -> None:
    paths = paths_of([touch("m", -1)], [conversion(0, definition="deleted")])
    assert paths.converting == []
    assert [ids(run) for run in paths.null] == [["m"]]


def test_outcomes_of_no_rule_are_not_touches() -> None:
    paths = paths_of([touch("opened", 0, "message.opened")], [])
    assert paths.null == []


def test_a_touchless_conversion_is_a_converting_path_without_touches() -> None:
    paths = paths_of([], [conversion(0)])
    assert [(p.conversion.conversion_id, p.touches) for p in paths.converting] == [
        ("c_prf_1_0", [])
    ]


def test_the_lookback_is_the_longest_window_and_sets_what_is_read() -> None:
    rules = [CreditRule(DAY, ALL_TYPES, DAY), CreditRule(3 * DAY, ALL_TYPES, DAY)]
    assert lookback(rules) == 3 * DAY
    assert lookback([]) == DEFAULT_LOOKBACK
    span = Span(at(0), at(24))
    assert span.touches_read(DAY) == (at(-48), at(24))
    assert span.conversions_read(DAY) == (at(-48), at(48))

"""Credit reports under each model over a small range worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import get_args

import pytest

from services.attribution.campaigns import CAMPAIGN_VISIT, CampaignTouch
from services.attribution.credit_report import CreditModel, CreditReport, fit, report
from services.attribution.paths import Conversion, CreditRule, Span, Touchpoint, range_paths
from services.attribution.store import Dimension

T0 = datetime(2025, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)
RULES = {"cnv": CreditRule(DAY, frozenset({"message.sent", CAMPAIGN_VISIT}), DAY)}
SPAN = Span(T0 - DAY, T0 + 3 * DAY)
MODELS: tuple[CreditModel, ...] = get_args(CreditModel)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def email(profile: str, message_id: str, hours: float) -> tuple[str, Touchpoint]:
    return profile, Touchpoint(
        message_id, at(hours), "message.sent", "email", "jrn", "node", "tpl", "var_a"
    )


def visit(profile: str, channel: str, hours: float) -> CampaignTouch:
    return CampaignTouch(f"ajs_{profile}_{hours}", profile, at(hours), channel, "s", "m", "c")


def credit(
    model: CreditModel,
    by: Dimension = "channel",
    extra: tuple[tuple[str, Touchpoint], ...] = (),
) -> CreditReport:
    """Paths [email, paid_search] → 100 EUR, [social, email] → 50 EUR, [social] → null.

    start→email 1/3, →social 2/3; email→paid_search 1/2, →conversion 1/2; paid_search→
    conversion 1; social→email 1/2, →null 1/2. P = 1/3 + 1/3 = 2/3. Without email: 0, effect 1;
    without paid_search: 1/6 + 1/6, effect 1/2; without social: 1/3, effect 1/2.
    """
    touches = [email("prf_1", "m1", -3), email("prf_2", "m2", -5), *extra]
    campaigns = [
        visit("prf_1", "paid_search", -2),
        visit("prf_2", "social", -6),
        visit("prf_3", "social", -4),
    ]
    conversions = [
        Conversion("c1", "cnv", "prf_1", at(0), Decimal("100"), "EUR"),
        Conversion("c2", "cnv", "prf_2", at(0), Decimal("50"), "EUR"),
    ]
    paths = range_paths(SPAN, RULES, touches, campaigns, conversions)
    return report(model, by, paths, RULES, fit(paths))


def by_channel(result: CreditReport) -> dict[str | None, tuple[float, Decimal]]:
    return {
        row.key["channel"]: (row.conversions, row.revenue.get("EUR", Decimal(0)))
        for row in result.rows
    }


def test_markov_credit_sums_to_the_removal_shares() -> None:
    result = credit("markov")
    # Targets: 2 conversions x the shares: email 1, paid_search 1/2, social 1/2. Split by the
    # effects themselves, c1 would give email 2/3 and c2 email 2/3 (4/3 in all); the fitted
    # weights are equal: c1 email 1/2, paid_search 1/2; c2 social 1/2, email 1/2.
    earned = by_channel(result)
    assert {channel: float(c) for channel, (c, _) in earned.items()} == pytest.approx(
        {"email": 1.0, "paid_search": 0.5, "social": 0.5}
    )
    assert {channel: float(r) for channel, (_, r) in earned.items()} == pytest.approx(
        {"email": 75.0, "paid_search": 50.0, "social": 25.0}
    )
    effects = {r.key["channel"]: r.effect for r in result.rows}
    assert {c: (e.removal_effect, e.share) for c, e in effects.items() if e} == {
        "email": pytest.approx((1.0, 0.5)),
        "paid_search": pytest.approx((0.5, 0.25)),
        "social": pytest.approx((0.5, 0.25)),
    }
    assert (result.conversions, result.attributed, result.null_paths) == (2, 2, 1)
    assert result.chain.conversion_probability == pytest.approx(2 / 3)
    assert result.calibration is not None
    assert result.calibration.residual == pytest.approx(0.0, abs=1e-6)


def test_markov_credit_out_of_reach_of_the_shares_reports_the_residual() -> None:
    """[email] → converts; [social, email] → null. start→email 1/2, →social 1/2; social→email 1;
    email→conversion 1/2, →null 1/2. P = 1/2; without social 1/4 (effect 1/2), without email 0
    (effect 1): shares 1/3 and 2/3. The one conversion has email alone on its path, so email
    earns 1 against its 2/3 and social 0 against 1/3."""
    paths = range_paths(
        SPAN,
        RULES,
        [email("prf_1", "m1", -3), email("prf_3", "m3", -3)],
        [visit("prf_3", "social", -4)],
        [Conversion("c1", "cnv", "prf_1", at(0))],
    )
    result = report("markov", "channel", paths, RULES, fit(paths))
    assert {row.key["channel"]: row.conversions for row in result.rows} == pytest.approx(
        {"email": 1.0, "social": 0.0}
    )
    assert result.chain.effect_of("social").share == pytest.approx(1 / 3)
    assert result.calibration is not None
    assert result.calibration.residual == pytest.approx(1 / 3)
    assert not result.calibration.converged


def test_rule_models_have_no_calibration() -> None:
    assert credit("linear").calibration is None


def test_markov_touches_of_one_channel_split_its_part_equally() -> None:
    # A second email of another journey on c1: [email, email, paid_search] is the chain's
    # [email, paid_search], so the weights stay equal. c1: email 1/2 as 1/4 + 1/4, paid_search
    # 1/2; c2: social 1/2, email 1/2.
    other = ("prf_1", Touchpoint("m5", at(-2.5), "message.sent", "email", "jrn_2", "n", "t"))
    rows = credit("markov", "journey", (other,)).rows
    assert {row.key["journey_id"]: row.conversions for row in rows} == pytest.approx(
        {"jrn": 3 / 4, "jrn_2": 1 / 4, None: 1.0}
    )


def test_last_touch_credits_the_last_touch_and_keeps_every_channel_of_the_chain() -> None:
    assert by_channel(credit("last_touch")) == {
        "email": (1.0, Decimal(50)),
        "paid_search": (1.0, Decimal(100)),
        "social": (0.0, Decimal(0)),
    }


@pytest.mark.parametrize("model", MODELS)
def test_every_model_credits_each_conversion_and_its_value_once(model: CreditModel) -> None:
    rows = credit(model).rows
    assert sum(row.conversions for row in rows) == pytest.approx(2.0)
    assert sum(row.revenue.get("EUR", Decimal(0)) for row in rows) == pytest.approx(Decimal(150))


def test_a_channel_that_never_precedes_a_conversion_earns_nothing() -> None:
    sms = ("prf_4", Touchpoint("m4", at(-1), "message.sent", "sms", "jrn", "node", "tpl"))
    [row] = [r for r in credit("markov", extra=(sms,)).rows if r.key["channel"] == "sms"]
    assert row.conversions == 0.0
    assert row.effect is not None and row.effect.removal_effect == 0.0


def test_by_journey_campaign_visits_have_no_journey_and_no_effect() -> None:
    rows = {row.key["journey_id"]: row for row in credit("linear", "journey").rows}
    assert rows.keys() == {"jrn", None}
    assert rows["jrn"].conversions == pytest.approx(1.0)
    assert rows[None].conversions == pytest.approx(1.0)
    assert all(row.effect is None for row in rows.values())


def test_variant_rows_carry_template_and_variant() -> None:
    rows = credit("first_touch", "variant").rows
    assert [(row.key, row.conversions) for row in rows] == [
        ({"template_id": "tpl", "variant_id": "var_a"}, 1.0),
        ({"template_id": None, "variant_id": None}, 1.0),
    ]

"""The dry run: a journey replayed through the engine's steps over planted people and
behaviours, each message judged by the contact policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from libs.common.contact_policy import Preferences, TopicRule, parse_policy
from libs.common.profiles import ProfileFacts
from services.journey.dry_run import (
    Behaviour,
    ContactRules,
    DryRunReport,
    Person,
    TemplateRule,
    dry_run,
)
from services.journey.graph import Journey

NOW = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)
SINCE = NOW - timedelta(days=7)
WELCOME_THEN_THANKS_OR_VIP_SMS: dict[str, Any] = {
    "entry": {"segment": "seg_dry"},
    "start": "welcome",
    "nodes": {
        "welcome": {"type": "send", "channel": "email", "template_id": "tpl_w", "next": "wait"},
        "wait": {
            "type": "wait_for",
            "event": "order_completed",
            "timeout": "P2D",
            "next": "thanks",
            "timeout_next": "is_vip",
        },
        "is_vip": {
            "type": "branch",
            "branches": [{"condition": {"tag": "vip"}, "next": "vip_sms"}],
            "default": "done",
        },
        "vip_sms": {"type": "send", "channel": "sms", "template_id": "tpl_v", "next": "done"},
        "thanks": {"type": "send", "channel": "email", "template_id": "tpl_t"},
        "done": {"type": "exit"},
    },
}
# One email a day; no SMS between 08:30 and 10:30 UTC, when the replay's SMS (two days after
# the entries at SINCE, 09:30 UTC) would go.
POLICY = {
    "caps": [{"channel": "email", "max": 1, "window": "P1D"}],
    "quiet_hours": {"start": "08:30", "end": "10:30", "channels": ["sms"]},
}


def member(
    profile_id: str,
    *orders_after: timedelta,
    tags: tuple[str, ...] = (),
    zone: str = "UTC",
) -> Person:
    facts = ProfileFacts(profile_id, {"timezone": zone}, list(tags))
    orders = [
        Behaviour(profile_id, "order_completed", SINCE + after, {"total": 20})
        for after in orders_after
    ]
    return Person(facts, SINCE, orders)


def replay(
    people: list[Person],
    consent: dict[str, Preferences] | None = None,
    definition: dict[str, Any] = WELCOME_THEN_THANKS_OR_VIP_SMS,
) -> DryRunReport:
    journey = Journey.parse("jrn_dry", 1, definition)
    rules = ContactRules(parse_policy(POLICY), consent or {}, default_consent=True)
    return dry_run(journey, people, rules, NOW, step_limit=100)


def test_dry_run_counts_entries_sends_policy_hits_and_paths() -> None:
    report = replay(
        [
            member("prf_cap", timedelta(hours=1)),  # thanks within a day of the welcome: capped
            member("prf_late", timedelta(hours=25)),
            member("prf_vip_quiet", tags=("vip",)),  # SMS at 09:30 UTC: quiet until 10:30
            member("prf_vip_shanghai", tags=("vip",), zone="Asia/Shanghai"),  # 17:30 there
            member("prf_no_email"),
            member("prf_plain"),
        ],
        {"prf_no_email": Preferences({"email": False})},
    )

    assert (report.people, report.entries) == (6, 6)
    assert report.messages == {
        ("welcome", "email", "sent"): 5,
        ("welcome", "email", "suppressed"): 1,
        ("thanks", "email", "sent"): 1,
        ("thanks", "email", "suppressed"): 1,
        ("vip_sms", "sms", "sent"): 2,
    }
    assert report.policy == {"consent": 1, "frequency_cap": 1, "quiet_hours": 1}
    assert report.top_paths() == [
        (("welcome", "wait", "is_vip", "done"), 2),
        (("welcome", "wait", "is_vip", "vip_sms", "done"), 2),
        (("welcome", "wait", "thanks"), 2),
    ]
    assert report.counters[("", "completed")] == 2
    assert report.counters[("", "exited")] == 4
    assert report.counters[("wait", "matched")] == 2
    assert report.counters[("wait", "timed_out")] == 4


def test_a_transactional_journey_s_messages_go_whatever_the_policy_says() -> None:
    transactional = {**WELCOME_THEN_THANKS_OR_VIP_SMS, "contact": {"transactional": True}}
    report = replay(
        [
            member("prf_cap", timedelta(hours=1)),
            member("prf_vip_quiet", tags=("vip",)),
            member("prf_no_email"),
        ],
        {"prf_no_email": Preferences({"email": False})},
        transactional,
    )

    assert report.messages == {
        ("welcome", "email", "sent"): 3,
        ("thanks", "email", "sent"): 1,
        ("vip_sms", "sms", "sent"): 1,
    }
    assert not report.policy


NEWS_THEN_OFFER: dict[str, Any] = {
    "entry": {"segment": "seg_dry"},
    "start": "news",
    "nodes": {
        # The send names its topic; the offer's is its template's (content's).
        "news": {
            "type": "send",
            "channel": "email",
            "template_id": "tpl_news",
            "topic": "newsletter",
            "next": "offer",
        },
        "offer": {"type": "send", "channel": "email", "template_id": "tpl_offer"},
    },
}
TOPICS = {"newsletter": TopicRule("newsletter"), "offers": TopicRule("offers", False)}


def topic_member(profile_id: str, **traits: Any) -> Person:
    return Person(ProfileFacts(profile_id, traits), SINCE)


def test_a_send_to_someone_who_declined_its_topic_on_the_channel_is_suppressed() -> None:
    journey = Journey.parse("jrn_topics", 1, NEWS_THEN_OFFER)
    people = [
        topic_member("prf_declined"),  # no newsletter by email, recorded by dispatch
        topic_member("prf_declined_sms"),  # no newsletter by SMS: email still goes
        topic_member("prf_trait_no", subscriptions={"newsletter": False}),
        topic_member("prf_offers_yes", subscriptions={"offers": {"email": True}}),
        topic_member("prf_plain"),
        topic_member("prf_plain_too"),
    ]
    preferences = {
        "prf_declined": Preferences(topics={"newsletter": {"email": False}}),
        "prf_declined_sms": Preferences(topics={"newsletter": {"sms": False}}),
    }
    templates = {
        "tpl_news": TemplateRule(topic="offers"),  # the send's own topic comes first
        "tpl_offer": TemplateRule(topic="offers"),  # opt-in: only a yes is sent to
    }
    rules = ContactRules(parse_policy({}), preferences, True, TOPICS, templates)

    report = dry_run(journey, people, rules, NOW, step_limit=100)

    assert report.messages == {
        ("news", "email", "sent"): 4,
        ("news", "email", "suppressed"): 2,
        ("offer", "email", "sent"): 1,
        ("offer", "email", "suppressed"): 5,
    }
    assert report.policy == {"unsubscribed": 2, "consent": 5}
    assert report == dry_run(journey, people, rules, NOW, step_limit=100, cohorts=False)


def test_a_transactional_template_s_messages_go_whatever_the_topic_answers() -> None:
    journey = Journey.parse("jrn_topics", 1, NEWS_THEN_OFFER)
    declined = Preferences(topics={"newsletter": {"email": False}})
    templates = {"tpl_news": TemplateRule(transactional=True), "tpl_offer": TemplateRule()}
    rules = ContactRules(parse_policy({}), {"prf_declined": declined}, True, TOPICS, templates)

    report = dry_run(journey, [topic_member("prf_declined")], rules, NOW, step_limit=100)

    assert report.messages == {("news", "email", "sent"): 1, ("offer", "email", "sent"): 1}
    assert not report.policy


def test_a_run_still_waiting_at_the_end_is_counted_where_it_waits() -> None:
    entered_yesterday = Person(ProfileFacts("prf_new"), NOW - timedelta(days=1))

    report = replay([entered_yesterday])

    assert report.top_paths() == [(("welcome", "wait"), 1)]
    assert report.in_progress == 1
    assert report.counters[("wait", "entered")] == 1
    assert report.counters[("wait", "completed")] == 0


def test_behaviour_entry_follows_the_reentry_rule() -> None:
    definition = {
        "entry": {"event": "signed_up"},
        "reentry": {"rule": "after", "cooldown": "P3D"},
        "start": "hello",
        "nodes": {"hello": {"type": "send", "channel": "email", "template_id": "tpl_h"}},
    }
    journey = Journey.parse("jrn_signup", 1, definition)
    signups = [
        Behaviour("prf_1", "signed_up", SINCE + timedelta(days=day), {}) for day in (0, 1, 4)
    ]
    rules = ContactRules(parse_policy({}), {}, default_consent=True)

    report = dry_run(
        journey, [Person(ProfileFacts("prf_1"), None, signups)], rules, NOW, step_limit=100
    )

    assert report.entries == 2  # day 1 is within the cooldown of day 0's entry
    assert report.messages == {("hello", "email", "sent"): 2}


def test_cohorts_report_what_replaying_everyone_alone_reports() -> None:
    definition = {
        "entry": {"segment": "seg_dry"},
        "exit": {"condition": {"trait": "plan", "op": "eq", "value": "cancelled"}},
        "start": "ab",
        "nodes": {
            "ab": {
                "type": "split",
                "arms": [
                    {"name": "a", "weight": 50, "next": "evening"},
                    {"name": "b", "weight": 50, "next": "either"},
                ],
            },
            "evening": {
                "type": "wait",
                "best_time": {"channel": "email", "within": "PT24H"},
                "next": "mail",
            },
            "mail": {"type": "send", "channel": "email", "template_id": "tpl_m", "next": "vip"},
            "either": {
                "type": "send",
                "channels": [
                    {"channel": "push", "template_id": "tpl_p"},
                    {"channel": "sms", "template_id": "tpl_s"},
                ],
                "next": "vip",
            },
            "vip": {
                "type": "branch",
                "branches": [
                    {"condition": {"score": "rfm", "op": "gte", "value": 400}, "next": "morning"}
                ],
                "default": None,
            },
            "morning": {"type": "wait", "until": "09:00", "next": "again"},
            "again": {"type": "send", "channel": "email", "template_id": "tpl_a"},
        },
    }
    journey = Journey.parse("jrn_alike", 1, definition)
    zones = ("UTC", "Asia/Shanghai", "America/New_York", "Nowhere/Unknown")
    people = [
        Person(
            ProfileFacts(
                f"prf_{i}",
                {
                    "timezone": zones[i % 4],
                    "plan": "cancelled" if i % 17 == 0 else "basic",
                    **({"phone": "+15550100"} if i % 3 else {}),
                    **({"push_token": "tok"} if i % 5 else {}),
                },
                [],
                scores={"rfm": 100 * (i % 7)},
            ),
            SINCE,
            [Behaviour(f"prf_{i}", "order_completed", SINCE + timedelta(hours=i), {})]
            if i % 11 == 0
            else [],
        )
        for i in range(400)
    ]
    consent = {f"prf_{i}": Preferences({"push": False}) for i in range(1, 400, 4)}
    rules = ContactRules(parse_policy(POLICY), consent, default_consent=True)

    together = dry_run(journey, people, rules, NOW, step_limit=100)
    alone = dry_run(journey, people, rules, NOW, step_limit=100, cohorts=False)

    assert together == alone
    assert together.counters[("ab", "arm:a")] and together.counters[("ab", "arm:b")]
    assert together.counters[("either", "fallbacks")]
    assert together.policy["quiet_hours"]

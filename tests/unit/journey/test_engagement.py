"""Counting engagement: each message once, at the local hour it was sent, whatever the order."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from services.journey.engagement import EngagementBook, MessageRecord, Tally

BERLIN = ZoneInfo("Europe/Berlin")
SENT = datetime(2026, 3, 14, 19, 5, tzinfo=UTC)  # 20:05 in Berlin


def take(book: EngagementBook, outcome: str, request: str = "req_1", **where: str) -> bool:
    profile, channel = where.get("profile", "prf_1"), where.get("channel", "email")
    return book.take(outcome, request, profile, channel, SENT, BERLIN)


def test_a_send_counts_at_its_local_hour_and_its_first_engagement_once() -> None:
    book = EngagementBook([])
    take(book, "sent")
    take(book, "delivered")
    take(book, "opened")
    take(book, "clicked")
    changes = book.take_changes()
    assert changes.people == {("prf_1", "email", 20): Tally(sends=1, engaged=1)}
    assert changes.untargeted == {("email", 20): Tally(sends=1, engaged=1)}
    [record] = changes.messages
    assert (record.hour, record.engaged) == (20, True)


def test_a_click_before_its_send_is_counted_when_the_send_comes() -> None:
    book = EngagementBook([])
    assert not take(book, "clicked")  # the person's counts are unchanged until the send
    assert book.take_changes().people == {}
    assert take(book, "sent")
    assert book.take_changes().people == {("prf_1", "email", 20): Tally(sends=1, engaged=1)}
    assert not take(book, "opened")  # engaged already


def test_an_engagement_in_a_later_batch_counts_at_the_hour_the_message_was_sent() -> None:
    sent_earlier = MessageRecord("req_1", "prf_1", "push", hour=7)
    book = EngagementBook([sent_earlier])
    take(book, "opened", channel="push")
    take(book, "sent", channel="push")  # a repeated receipt is not a second send
    assert book.take_changes().people == {("prf_1", "push", 7): Tally(sends=0, engaged=1)}


def test_a_targeted_send_counts_for_the_person_but_not_for_the_population_curve() -> None:
    book = EngagementBook([MessageRecord("req_1", "prf_1", "email", targeted=True)])
    take(book, "sent")
    take(book, "opened")
    changes = book.take_changes()
    assert changes.people == {("prf_1", "email", 20): Tally(sends=1, engaged=1)}
    assert changes.untargeted == {}


def test_a_failed_or_suppressed_message_counts_nothing() -> None:
    book = EngagementBook([])
    for outcome in ("failed", "suppressed", "unsubscribed"):
        take(book, outcome)
    changes = book.take_changes()
    assert (changes.people, changes.untargeted, changes.messages) == ({}, {}, [])


def test_a_merge_moves_unwritten_counts_and_messages_to_the_survivor() -> None:
    book = EngagementBook([])
    take(book, "sent", "req_1", profile="prf_anon")
    take(book, "sent", "req_2", profile="prf_known")
    book.merge("prf_known", ["prf_anon"])
    take(book, "opened", "req_1", profile="prf_anon")
    changes = book.take_changes()
    assert changes.people == {("prf_known", "email", 20): Tally(sends=2, engaged=1)}
    assert {record.profile_id for record in changes.messages} == {"prf_known"}


def test_an_erased_profile_leaves_no_record_or_count_but_the_population_keeps_its_sends() -> None:
    book = EngagementBook([])
    take(book, "sent", "req_1", profile="prf_gone")
    take(book, "sent", "req_2", profile="prf_kept")
    book.forget("prf_gone")
    changes = book.take_changes()
    assert set(changes.people) == {("prf_kept", "email", 20)}
    assert [record.request_id for record in changes.messages] == ["req_2"]
    assert changes.untargeted == {("email", 20): Tally(sends=2, engaged=0)}

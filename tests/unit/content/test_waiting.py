"""Requests waiting for an address: which a batch's profile changes wake, and when they expire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.content.profiles import ProfileBook, ProfileFacts
from services.content.waiting import addressed_channels, expired, newly_addressed


def _channels_before(book: ProfileBook) -> dict[str, frozenset[str]]:
    return {profile_id: addressed_channels(facts) for profile_id, facts in book.facts.items()}


def test_addressed_channels_are_those_with_a_usable_address() -> None:
    facts = ProfileFacts(
        "prf_a", traits={"email": "li@example.com", "phone": "   ", "push_token": 12345}
    )
    assert addressed_channels(facts) == frozenset({"email", "push", "webhook"})
    assert addressed_channels(None) == frozenset()
    # A webhook needs no address: only that content has heard of the profile.
    assert addressed_channels(ProfileFacts("prf_b")) == frozenset({"webhook"})


def test_an_address_a_batch_gives_wakes_the_profiles_requests_for_that_channel() -> None:
    book = ProfileBook(
        {
            "prf_known": ProfileFacts("prf_known", traits={"email": "old@example.com"}),
            "prf_nameless": ProfileFacts("prf_nameless", traits={"first_name": "Li"}),
        }
    )
    before = _channels_before(book)
    book.update("prf_known", [("traits.email", "new@example.com"), ("traits.phone", "+86100")])
    book.update("prf_nameless", [("traits.last_name", "Wei")])
    book.update("prf_new", [("traits.email", "new-person@example.com")])  # created with one
    assert newly_addressed(before, book.saved(), book.survivors) == [
        ("prf_known", "sms"),  # a changed email is not a new one: nothing waits for it
        ("prf_new", "email"),
        ("prf_new", "webhook"),  # heard of for the first time
    ]


def test_an_address_removed_or_never_given_wakes_nothing_on_its_channel() -> None:
    book = ProfileBook({"prf_a": ProfileFacts("prf_a", traits={"email": "a@example.com"})})
    before = _channels_before(book)
    book.update("prf_a", [("traits.email", None)])
    book.update("prf_b", [("traits.email", "  ")])
    # prf_b's blank email is no address; content hearing of prf_b at all wakes its webhooks.
    assert newly_addressed(before, book.saved(), book.survivors) == [("prf_b", "webhook")]


def test_a_merge_survivor_answers_the_requests_it_gained_for_every_address_it_has() -> None:
    book = ProfileBook(
        {
            "prf_s": ProfileFacts("prf_s", traits={"email": "s@example.com"}),
            "prf_m": ProfileFacts("prf_m", traits={"phone": "+86100"}),
        }
    )
    before = _channels_before(book)
    book.merge("prf_s", ["prf_m"])
    assert book.survivors == {"prf_s"}
    assert book.moved_decisions() == {"prf_m": "prf_s"}  # the waiting requests follow them
    assert newly_addressed(before, book.saved(), book.survivors) == [
        ("prf_s", "email"),
        ("prf_s", "sms"),
        ("prf_s", "webhook"),
    ]


def test_an_erased_profile_wakes_nothing_and_its_requests_are_erased() -> None:
    book = ProfileBook({"prf_a": ProfileFacts("prf_a")})
    before = _channels_before(book)
    book.update("prf_a", [("traits.email", "a@example.com")])
    book.erase("prf_a")
    assert newly_addressed(before, book.saved(), book.survivors) == []
    assert book.erased_decisions() == ["prf_a"]


def test_a_request_expires_once_it_has_waited_longer_than_the_setting() -> None:
    arrived = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)
    assert not expired(arrived, arrived + timedelta(seconds=600), 600)
    assert expired(arrived, arrived + timedelta(seconds=600, microseconds=1), 600)
    assert not expired(arrived, arrived + timedelta(seconds=5), 600)

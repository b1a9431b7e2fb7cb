"""Which fault a duplicate message is charged to (pure; no stack)."""

from __future__ import annotations

from tests.integration.chaos.reconcile import BEFORE_ANY_FAULT, Copy, raw_duplicates

INJECTED = [(10.0, "kill dispatch"), (50.0, "restart postgres"), (65.0, "silence postgres")]


def test_a_copy_is_charged_to_the_kill_that_cut_its_record_short() -> None:
    charged = raw_duplicates([Copy("email", first_at=9.2, at=30.0)], INJECTED)
    assert charged == {"kill dispatch": {"email": 1}}


def test_a_copy_sent_a_lease_later_is_charged_to_the_fault_of_its_first_copy() -> None:
    # The record failed while PostgreSQL restarted; the resend came after the next fault began.
    charged = raw_duplicates([Copy("sms", first_at=51.0, at=66.0)], INJECTED)
    assert charged == {"restart postgres": {"sms": 1}}


def test_a_copy_before_any_fault_is_charged_to_none() -> None:
    charged = raw_duplicates([Copy("webhook", first_at=1.0, at=4.0)], INJECTED)
    assert charged == {BEFORE_ANY_FAULT: {"webhook": 1}}

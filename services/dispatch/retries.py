"""What a provider's answer means for a ledger row: sent, try again later, or give up."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from services.dispatch.channels.base import SendResult


@dataclass(frozen=True)
class NextStep:
    """The row's new status; for `pending`, when to try again; whether the failure is final."""

    status: Literal["sent", "pending", "failed", "suppressed"]
    retry_in: timedelta | None = None
    dead_letter: bool = False


def retry_delay(attempt: int, base_seconds: float, max_seconds: float) -> timedelta:
    """Exponential: base, 2*base, 4*base... after the 1st, 2nd, 3rd attempt, at most `max`."""
    return timedelta(seconds=min(max_seconds, base_seconds * 2 ** max(0, attempt - 1)))


def next_step(
    result: SendResult,
    attempts: int,
    *,
    max_attempts: int,
    base_seconds: float,
    max_seconds: float,
) -> NextStep:
    """After `attempts` calls: a transient error is retried until `max_attempts`, a permanent
    one is final at once and goes to the dead-letter topic; a refusal by the person (consent)
    is final at once and suppresses the message. A retry waits at least as long as
    the provider's `Retry-After` asked (a throttled provider counts a call made sooner against
    us), even beyond `max_seconds`."""
    if result.outcome == "sent":
        return NextStep("sent")
    if result.outcome == "permanent":
        return NextStep("failed", dead_letter=True)
    if result.outcome == "refused":
        return NextStep("suppressed")
    if attempts >= max_attempts:
        return NextStep("failed")
    delay = retry_delay(attempts, base_seconds, max_seconds)
    if result.retry_after is not None:
        delay = max(delay, timedelta(seconds=result.retry_after))
    return NextStep("pending", retry_in=delay)

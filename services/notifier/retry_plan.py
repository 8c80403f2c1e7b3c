"""What to do after a send attempt failed (pure; `now` and the jitter are passed in).

A notification steps through the person's contact methods in order; after a failed
attempt the next method is tried at once, and once every method failed in a round the
next round starts after an exponential backoff with jitter. It is given up when its
retry budget (counted from when it was queued) is spent, or at once when its only
method failed for good (a 4xx, a missing configuration).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class SendRetry:
    """The send queue's retry budget and backoff between rounds of contact methods."""

    budget: timedelta = timedelta(minutes=15)
    initial: timedelta = timedelta(seconds=1)
    longest: timedelta = timedelta(seconds=60)

    def backoff(self, rounds: int, jitter: float) -> timedelta:
        """Before round `rounds + 1`: initial * 2**(rounds-1), capped, plus up to +50%."""
        # NOTE: the exponent is capped: 2**rounds overflows timedelta after ~50 rounds.
        base: timedelta = min(self.longest, self.initial * 2 ** min(max(0, rounds - 1), 30))
        return base * (1 + 0.5 * min(max(jitter, 0.0), 1.0))


@dataclass(frozen=True)
class Retry:
    method_index: int
    at: datetime
    first_round_done: bool  # every contact method has now failed once: escalate?


@dataclass(frozen=True)
class GiveUp:
    why: str


def after_failure(
    *,
    method_index: int,
    methods: int,
    queued_at: datetime,
    permanent: bool,
    now: datetime,
    retry: SendRetry,
    jitter: float,
) -> Retry | GiveUp:
    if permanent and methods == 1:
        return GiveUp("its only contact method refused it for good")
    end = queued_at + retry.budget
    if now >= end:
        return GiveUp(f"no contact method worked within {retry.budget}")
    following = method_index + 1
    at = now
    if following % methods == 0:  # a round of every method failed: back off
        at = min(end, now + retry.backoff(following // methods, jitter))
    return Retry(following, at, following == methods)

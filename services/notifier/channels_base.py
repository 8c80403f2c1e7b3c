"""What every notifier channel shares: the retry policy and the retry loop.

A channel's single attempt raises `TransientError` (worth retrying) or `PermanentError`
(never); `with_retries` repeats transient failures with exponential backoff and jitter,
a bounded number of times, then re-raises the last `TransientError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from services.runtime.errors import PermanentError, TransientError

__all__ = ["DEFAULT_TIMEOUT_S", "RetryPolicy", "invalid_config", "with_retries"]

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded attempts; waits of `initial_s * 2**n` (capped at `max_s`) plus up to `jitter_s`.

    The default gives up after 3 attempts and about 0.6-1.0 s of waiting in all.
    """

    attempts: int = 3
    initial_s: float = 0.2
    max_s: float = 2.0
    jitter_s: float = 0.2

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise invalid_config(f"retry attempts must be at least 1, got {self.attempts}")
        if min(self.initial_s, self.max_s, self.jitter_s) < 0:
            raise invalid_config("retry waits must not be negative")


def invalid_config(detail: str) -> PermanentError:
    return PermanentError(detail, reason="invalid_config")


def with_retries(policy: RetryPolicy, attempt: Callable[[], T]) -> T:
    """Run `attempt`, retrying `TransientError`s per `policy`; the last one is re-raised."""
    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait_exponential_jitter(
            multiplier=policy.initial_s, max=policy.max_s, jitter=policy.jitter_s
        ),
        retry=retry_if_exception_type(TransientError),
        reraise=True,
    )
    return retrying(attempt)

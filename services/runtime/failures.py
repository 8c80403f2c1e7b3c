"""The ack decision, in one place, driven by the error's type.

permanent            -> dead-letter at once, with the reason
transient, or a bug  -> retry later with exponential backoff and jitter, without
                        blocking other messages; dead-letter after `max_attempts`
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from tenacity import RetryCallState, wait_exponential_jitter

from services.runtime.errors import PermanentError, PipelineError, TransientError
from services.runtime.messages import Inbound, Outgoing
from services.runtime.names import DEAD_LETTER_EXCHANGES

Action = Literal["dead_letter", "retry"]


@dataclass(frozen=True)
class Decision:
    action: Action
    error: PipelineError


def classify(exc: BaseException) -> PipelineError:
    """Map any handler failure onto the two classes. Unknown exceptions are bugs:
    retried (a bug may depend on a transient state) but bounded, then dead-lettered."""
    if isinstance(exc, PipelineError):
        return exc
    return TransientError(f"{type(exc).__name__}: {exc}", reason="unhandled")


def decide(exc: BaseException, attempts: int, max_attempts: int) -> Decision:
    error = classify(exc)
    if isinstance(error, PermanentError):
        return Decision("dead_letter", error)
    if attempts >= max_attempts:
        return Decision("dead_letter", error)
    return Decision("retry", error)


class Backoff:
    """Exponential backoff with jitter between attempts, computed by tenacity."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        self._wait = wait_exponential_jitter(multiplier=initial_s, max=max_s, jitter=initial_s)

    def delay_s(self, attempt: int) -> float:
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = attempt
        return float(self._wait(state))


def dead_letter(
    inbound: Inbound,
    *,
    queue: str,
    dead_letter_queue: str,
    dead_letter_exchange: str,
    service: str,
    error: PipelineError,
    attempts: int,
    first_failure: datetime,
    now: datetime | None = None,
) -> Outgoing:
    """The original body and headers, plus why it failed. Published to the queue's own
    dead-letter exchange (unprefixed, `names.dead_letter_exchange`), which routes it to
    `dead_letter_queue` (the routing key): never through the default exchange, which
    would let a service user write to any queue by name."""
    now = now or datetime.now(UTC)
    headers: dict[str, Any] = dict(inbound.headers)
    headers |= {
        "x-error": str(error)[:1000],
        "x-error-reason": error.reason,
        "x-service": service,
        "x-attempts": attempts,
        "x-first-failure-at": first_failure.isoformat(),
        "x-last-failure-at": now.isoformat(),
        "x-original-exchange": inbound.exchange,
        "x-original-routing-key": inbound.routing_key,
        "x-original-queue": queue,
    }
    return Outgoing(
        exchange=dead_letter_exchange,
        routing_key=dead_letter_queue,
        body=inbound.body,
        message_id=inbound.message_id or "",
        content_type=inbound.content_type or "application/octet-stream",
        correlation_id=inbound.correlation_id,
        headers=headers,
        mandatory=True,
        log={"error": str(error)},
    )


def is_dead_letter(out: Outgoing) -> bool:
    """A dead letter (of `dead_letter` or the notifier's): never deduplicated by its
    message id, which is its input's."""
    return out.exchange in DEAD_LETTER_EXCHANGES and "x-error-reason" in out.headers

"""Dead letters as an operator sees them, which ones to replay, and what a replay sends.

Pure: no broker here (`dlq_broker.py` reads and settles them). A dead letter comes
either from the runtime (`failures.dead_letter`: x-error-* and x-original-* headers)
or from the broker itself when a quorum queue's delivery limit ran out (x-death).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.runtime.messages import Outgoing
from services.runtime.names import SERVICE_BINDINGS, Names

# Why it failed and where it came from: written by failures.dead_letter.
FAILURE_HEADERS = frozenset(
    {
        "x-error",
        "x-error-reason",
        "x-service",
        "x-attempts",
        "x-first-failure-at",
        "x-last-failure-at",
        "x-original-exchange",
        "x-original-routing-key",
        "x-original-queue",
    }
)
# Counters and bookkeeping of the broker and the publisher. The consume loop starts a
# delivery's attempts at x-delivery-count, so a replay that kept it would start late.
BROKER_HEADERS = frozenset(
    {
        "x-death",
        "x-delivery-count",
        "x-acquired-count",
        "x-publish-token",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
    }
)
REPLAY_COUNT = "x-replay-count"


def resolve_dead_letter_queue(names: Names, given: str) -> str:
    """`intake.inbound`, `intake.inbound.dead`, `intake`, with or without the prefix."""
    bare = given.removeprefix(names.prefix) if names.prefix else given
    bare = bare.removesuffix(".dead")
    for service, (queue, _, _) in SERVICE_BINDINGS.items():
        if bare in (queue, service, service.replace("_", "-")):
            return names.dead_letter_queue(service)
    known = ", ".join(queue for queue, _, _ in SERVICE_BINDINGS.values())
    raise ValueError(f"unknown queue {given!r}; choose one of {known} (or its .dead queue)")


@dataclass(frozen=True)
class DeadLetter:
    id: str
    message_id: str | None
    reason: str
    error: str
    service: str | None
    attempts: int | None
    first_failure_at: str | None
    last_failure_at: str | None
    original_exchange: str | None
    original_routing_key: str | None
    original_queue: str | None
    content_type: str | None
    correlation_id: str | None
    reads: int  # times the .dead queue delivered it before (listings count too)
    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "message_id": self.message_id,
            "reason": self.reason,
            "error": self.error,
            "service": self.service,
            "attempts": self.attempts,
            "first_failure_at": self.first_failure_at,
            "last_failure_at": self.last_failure_at,
            "original_exchange": self.original_exchange,
            "original_routing_key": self.original_routing_key,
            "original_queue": self.original_queue,
            "reads": self.reads,
        }

    def detail(self) -> dict[str, Any]:
        try:
            body, encoding = self.body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            body, encoding = base64.b64encode(self.body).decode("ascii"), "base64"
        return self.summary() | {
            "content_type": self.content_type,
            "correlation_id": self.correlation_id,
            "headers": jsonable(self.headers),
            "body": body,
            "body_encoding": encoding,
        }


def jsonable(value: Any) -> Any:
    """Header values as JSON: py-amqp hands out datetimes, bytes and nested tables."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(jsonable(value))


def stable_id(message_id: str | None, headers: Mapping[str, Any], body: bytes) -> str:
    """The message id; without one, a hash that is the same at every listing."""
    if message_id:
        return message_id
    digest = hashlib.sha256(body)
    for key in ("x-original-routing-key", "x-first-failure-at"):
        digest.update(str(headers.get(key, "")).encode())
    return f"d-{digest.hexdigest()[:16]}"


def from_delivery(
    properties: Mapping[str, Any], headers: Mapping[str, Any], body: bytes, redelivered: bool
) -> DeadLetter:
    headers = dict(headers)
    death = _first_death(headers)
    count = headers.get("x-delivery-count")
    message_id = properties.get("message_id") or None
    attempts = headers.get("x-attempts")
    return DeadLetter(
        id=stable_id(message_id, headers, body),
        message_id=message_id,
        reason=str(headers.get("x-error-reason") or death.get("reason") or "unknown"),
        error=str(headers.get("x-error") or _broker_error(death)),
        service=_text(headers.get("x-service")),
        attempts=attempts if isinstance(attempts, int) else None,
        first_failure_at=_text(headers.get("x-first-failure-at") or death.get("time")),
        last_failure_at=_text(headers.get("x-last-failure-at") or death.get("time")),
        original_exchange=_original(headers, "x-original-exchange", death.get("exchange")),
        original_routing_key=_original(headers, "x-original-routing-key", _death_key(death)),
        original_queue=_text(headers.get("x-original-queue") or death.get("queue")),
        content_type=properties.get("content_type") or None,
        correlation_id=properties.get("correlation_id") or None,
        reads=count if redelivered and isinstance(count, int) else 0,
        body=body,
        headers=headers,
    )


def _first_death(headers: Mapping[str, Any]) -> Mapping[str, Any]:
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[-1], Mapping):
        return deaths[-1]  # NOTE: x-death is newest first; the oldest is where it began
    return {}


def _death_key(death: Mapping[str, Any]) -> str | None:
    keys = death.get("routing-keys")
    return str(jsonable(keys[0])) if isinstance(keys, list) and keys else None


def _original(headers: Mapping[str, Any], key: str, fallback: Any) -> str | None:
    # The default exchange is "" and legitimate; only a missing header falls back.
    value = headers.get(key)
    return str(jsonable(value)) if value is not None else _text(fallback)


def _broker_error(death: Mapping[str, Any]) -> str:
    if not death:
        return "no failure headers (not dead-lettered by the runtime or the broker)"
    return f"dead-lettered by the broker from {_text(death.get('queue'))}: {death.get('reason')}"


def select(
    letters: Iterable[DeadLetter], ids: Iterable[str], reasons: Iterable[str], everything: bool
) -> list[DeadLetter]:
    """Everything, or those whose id or reason was named."""
    wanted_ids, wanted_reasons = set(ids), set(reasons)
    return [
        letter
        for letter in letters
        if everything or letter.id in wanted_ids or letter.reason in wanted_reasons
    ]


def replay_message(letter: DeadLetter, now: datetime | None = None) -> Outgoing:
    """The original message again, as if new: body, content type, message id and its
    own headers; the failure record and the broker's counters are left behind."""
    if letter.original_exchange is None or letter.original_routing_key is None:
        raise ValueError(f"{letter.id}: no original exchange / routing key to replay to")
    headers = {
        key: value
        for key, value in letter.headers.items()
        if key not in FAILURE_HEADERS and key not in BROKER_HEADERS
    }
    previous = headers.get(REPLAY_COUNT)
    headers[REPLAY_COUNT] = (previous if isinstance(previous, int) else 0) + 1
    headers["x-replayed-at"] = (now or datetime.now(UTC)).isoformat()
    return Outgoing(
        # NOTE: x-original-exchange is the full (prefixed) name; the replay publisher
        # is built with an empty prefix so it is not prefixed twice.
        exchange=letter.original_exchange,
        routing_key=letter.original_routing_key,
        body=letter.body,
        message_id=letter.message_id or "",
        content_type=letter.content_type or "application/octet-stream",
        correlation_id=letter.correlation_id,
        headers=headers,
        mandatory=True,
        log={"dead_letter_id": letter.id, "reason": letter.reason},
    )

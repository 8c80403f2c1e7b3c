"""The consume loop's in-flight deliveries and their settling.

A delivery's outputs are published without waiting; the delivery is acked once the
broker confirmed all of them, oldest first (`_settle_ready`), while later deliveries
are already being handled: confirms are pipelined.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import structlog

from services.runtime.acks import Acker
from services.runtime.config import RuntimeSettings
from services.runtime.dedup import DedupWindow
from services.runtime.deliveries import Delivery
from services.runtime.errors import PipelineError, TransientError
from services.runtime.failures import is_dead_letter
from services.runtime.logging import LineBuffer
from services.runtime.messages import Outgoing
from services.runtime.metrics import ServiceMetrics
from services.runtime.publisher import ConfirmedPublisher

log = structlog.get_logger("runtime")


@dataclass
class InFlight:
    delivery: Delivery
    outputs: list[Outgoing]
    seqs: list[int]
    outcome: str
    deadline: float
    # Deliveries whose outputs were dropped as duplicates of this one's, still in flight:
    # they stand or fall with this one.
    depends_on: list[InFlight] = field(default_factory=list)
    failed: bool = False


class Settling:
    """ConsumeLoop's tracking and settling half (the loop sets these in __init__)."""

    service: str
    _s: RuntimeSettings
    _publisher: ConfirmedPublisher
    _metrics: ServiceMetrics
    _acker: Acker
    _amqp: bool
    _dedup_inputs: bool
    _published: DedupWindow
    _handled: DedupWindow
    _inflight: deque[InFlight]
    _pending_ids: dict[str, InFlight]
    _info_enabled: bool
    _lines: LineBuffer | None
    _confirmed_ids: list[str]
    _settled: dict[str, int]
    _published_count: int
    _consumed_count: int  # deliveries received since the last pass

    def _fail(self, delivery: Delivery, exc: BaseException) -> None:
        raise NotImplementedError  # Handling's

    def _track(
        self,
        delivery: Delivery,
        outputs: list[Outgoing],
        outcome: str,
        deps: list[InFlight] | None = None,
    ) -> None:
        seqs = list(map(self._publisher.publish, outputs))
        deadline = time.monotonic() + self._s.confirm_timeout_s
        item = InFlight(delivery, outputs, seqs, outcome, deadline, deps or [])
        for out in outputs:
            if not is_dead_letter(out):
                self._pending_ids[out.message_id] = item
        self._inflight.append(item)
        if not self._amqp:
            self._settle_ready()  # in-memory: nothing to wait for

    def _settle_ready(self) -> None:
        """Ack (or fail) every delivery, oldest first, whose outputs are all confirmed.

        In order: confirms arrive in publish order, and a delivery that waits behind an
        older one costs a moment, never a wrong ack."""
        self._publisher.pump(0)
        try:
            self._settle_confirmed()
        finally:
            self._record_pass()
        self._acker.flush()
        self._flush_lines()

    def _record_pass(self) -> None:
        """What a pass counted, recorded once per pass, not per delivery: the dedup
        window's clock and eviction, and the counters' locks."""
        self._published.add_all(self._confirmed_ids)
        self._confirmed_ids = []
        for outcome, count in self._settled.items():
            self._metrics.outcome(outcome).inc(count)
        if self._published_count:
            self._metrics.published.inc(self._published_count)
        if self._consumed_count:
            self._metrics.consumed.inc(self._consumed_count)
        self._settled, self._published_count, self._consumed_count = {}, 0, 0

    def _settle_confirmed(self) -> None:
        publisher, inflight, pending = self._publisher, self._inflight, self._pending_ids
        while inflight:
            item = inflight[0]
            if not all(map(publisher.is_done, item.seqs)):
                # NOTE: while the broker is blocked (memory/disk alarm) confirms are
                # late, not lost; the runner bounds that wait (BLOCKED_TIMEOUT_S).
                if time.monotonic() < item.deadline or publisher.blocked_since:
                    break
                publisher.expire(item.seqs)
            inflight.popleft()
            for out in item.outputs:
                if pending.get(out.message_id) is item:
                    del pending[out.message_id]
            errors = [e for e in map(publisher.take, item.seqs) if e]
            if item.depends_on and any(dep.failed for dep in item.depends_on):
                errors.append(TransientError("the publish this duplicate waited on failed"))
            if errors:
                item.failed = True
                self._publish_failed(item, errors[0])
            else:
                self._settle(item)

    def _flush(self) -> None:
        """Block until everything in flight is settled (confirmed, failed or expired)."""
        while self._inflight:
            self._publisher.wait(self._inflight[0].seqs, self._inflight[0].deadline)
            self._settle_ready()

    def _settle(self, item: InFlight) -> None:
        self._acker.ack_later(item.delivery.message)
        parked = False  # the handler dead-lettered its own input (the notifier does)
        for out in item.outputs:
            if is_dead_letter(out):
                parked = True
            else:
                self._confirmed_ids.append(out.message_id)
        # NOTE: a dead-lettered input was not handled: replayed from its DLQ (same
        # message id) it must be taken again, not acked as a duplicate and so lost.
        dead = item.outcome == "dead_lettered"
        if self._dedup_inputs and item.delivery.inbound.message_id and not dead:
            self._handled.add_all([item.delivery.inbound.message_id])
        outcome = item.outcome
        if outcome == "acked" and parked:
            outcome = "dead_lettered"
        self._settled[outcome] = self._settled.get(outcome, 0) + 1
        self._published_count += len(item.outputs)
        self._log(item.delivery, outcome, item.outputs[0].log if item.outputs else None)

    def _publish_failed(self, item: InFlight, error: PipelineError) -> None:
        if item.outcome == "dead_lettered":
            # NOTE: the DLQ itself refused it. Requeue rather than drop: the broker's
            # delivery-limit dead-letters it once redeliveries run out.
            self._acker.reject(item.delivery.message, requeue=True)
            self._log(item.delivery, "requeued", {"error": str(error)}, level="error")
            return
        self._fail(item.delivery, error)

    def _log(
        self,
        delivery: Delivery,
        outcome: str,
        extra: dict[str, Any] | None = None,
        level: str = "",
    ) -> None:
        level = level or ("info" if outcome in ("acked", "duplicate") else "warning")
        if level == "info" and not self._info_enabled:
            return  # the per-message line is the hot path; skip building it
        inbound = delivery.inbound
        fields = {
            "service": self.service,
            "routing_key": inbound.routing_key,
            "message_id": inbound.message_id,
            "correlation_id": inbound.correlation_id,
            "outcome": outcome,
            "attempt": delivery.attempts,
            "duration_ms": round((time.perf_counter() - delivery.started) * 1000, 3),
        }
        if extra:
            fields.update(extra)
        if self._lines is not None:
            if level == "info" or self._lines.enabled(level):
                self._lines.add(level, "message.settled", fields)
        else:
            getattr(log, level)("message.settled", **fields)

    def _flush_lines(self) -> None:
        if self._lines is not None:
            self._lines.flush()

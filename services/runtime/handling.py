"""The consume loop's handling half: deliveries in, handlers run, failures decided.

Failures go through `failures.decide`: dead-letter now, or hold the delivery unacked
and retry it after a backoff while other deliveries keep flowing.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog

from services.runtime.arrivals import Arrivals
from services.runtime.deliveries import Delivery, to_inbound
from services.runtime.errors import PermanentError, PipelineError
from services.runtime.failures import Backoff, dead_letter, decide
from services.runtime.messages import Inbound, Outgoing
from services.runtime.metrics import observe_many
from services.runtime.names import Names, dead_letter_exchange
from services.runtime.settling import Settling

Handler = Callable[[Inbound], Sequence[Outgoing]]
# What a batch handler says of each input, in order: its outputs, or why it failed.
Result = Sequence[Outgoing] | BaseException
BatchHandler = Callable[[Sequence[Inbound]], Sequence[Result]]
log = structlog.get_logger("runtime")


class Handling(Settling):
    """ConsumeLoop's handling half (the loop sets these in __init__)."""

    _handlers: dict[str, Handler]
    _routes: dict[str, Handler]
    _batch_handler: BatchHandler | None
    _queue_key: str
    _arrived: Arrivals[Delivery]
    _releasing: bool
    _names: Names
    _backoff: Backoff
    _retries: list[tuple[float, int, Delivery]]
    _tiebreak: itertools.count[int]
    _generation: int

    def _handler_for(self, routing_key: str) -> Handler:
        handler = self._routes.get(routing_key)
        if handler is not None:
            return handler
        for key, handler in self._handlers.items():
            if routing_key == key or routing_key.startswith(key + ".") or key == "#":
                if len(self._routes) < 1000:  # keys come from upstream: bounded
                    self._routes[routing_key] = handler
                return handler
        raise PermanentError(f"no handler for routing key {routing_key!r}", reason="no_handler")

    def _on_message(self, message: Any) -> None:
        if self._releasing:
            # NOTE: py-amqp may dispatch buffered deliveries while the connection closes;
            # their tags die with the channel and the broker redelivers them.
            return
        self._consumed_count += 1  # counted once a settling pass (_settle_ready)
        self._acker.received(message)
        delivery = Delivery(message, to_inbound(message), self._generation)
        # NOTE: quorum queues count redeliveries; carry them so a crash loop stays bounded.
        count = delivery.inbound.headers.get("x-delivery-count", 0)
        delivery.attempts = count if isinstance(count, int) and count > 0 else 0
        self._arrived.add(delivery)

    def _on_undecodable(self, message: Any, exc: Exception) -> None:
        """kombu refused the message before our callback (e.g. an unknown compression
        header): the bytes cannot be read as sent, so it is dead-lettered."""
        if self._releasing:
            return  # redelivered on the next connection, like any delivery during a close
        self._acker.received(message)
        delivery = Delivery(message, to_inbound(message), self._generation)
        delivery.attempts = 1
        self._fail(delivery, PermanentError(f"undecodable message: {exc}", reason="undecodable"))

    def _handle_arrived(self) -> None:
        """Handle what arrived since the last turn as one batch (one store transaction in
        a batch handler), urgent deliveries first as a batch of their own, then track
        each delivery's outputs."""
        for batch in self._arrived.next_turn():
            if batch:
                self._process(batch)

    def _process(self, deliveries: list[Delivery]) -> None:
        todo: list[Delivery] = []
        for delivery in deliveries:
            delivery.attempts += 1
            inbound = delivery.inbound
            if len(inbound.body) > self._s.max_message_bytes:
                size = f"body is {len(inbound.body)} bytes, over {self._s.max_message_bytes}"
                self._fail(delivery, PermanentError(size, reason="oversize"))
            elif self._dedup_inputs and inbound.message_id in self._handled:
                self._track(delivery, [], "duplicate")
            else:
                todo.append(delivery)
        if not todo:
            return
        started = time.perf_counter()
        results = self._run_handlers(todo)
        each = (time.perf_counter() - started) / len(todo)  # a batch's cost, shared
        handled = 0
        try:
            for delivery, result in zip(todo, results, strict=True):
                if isinstance(result, BaseException):
                    self._fail(delivery, result)
                else:
                    handled += 1
                    self._outputs(delivery, list(result))
        finally:
            if handled:  # one observation each, recorded once for the batch
                observe_many(self._metrics.handler_seconds, each, handled)

    def _run_handlers(self, todo: list[Delivery]) -> list[Result]:
        if self._batch_handler is not None:
            try:
                results = list(self._batch_handler([d.inbound for d in todo]))
            except Exception as exc:  # the batch as a whole failed (e.g. its transaction)
                return [exc] * len(todo)
            if len(results) != len(todo):
                bug = RuntimeError(f"batch handler gave {len(results)} results for {len(todo)}")
                return [bug] * len(todo)
            return results
        out: list[Result] = []
        for delivery in todo:
            try:
                out.append(self._handler_for(delivery.inbound.routing_key)(delivery.inbound))
            except Exception as exc:  # classified, logged and settled in _fail: never swallowed
                out.append(exc)
        return out

    def _outputs(self, delivery: Delivery, outputs: list[Outgoing]) -> None:
        # Drop what was already confirmed; what is still in flight is waited for.
        fresh, deps = [], []
        for out in outputs:
            if out.message_id in self._published:
                continue
            pending = self._pending_ids.get(out.message_id)
            if pending is None:
                fresh.append(out)
            else:
                deps.append(pending)
        self._track(delivery, fresh, "acked" if fresh or not outputs else "duplicate", deps)

    def _fail(self, delivery: Delivery, exc: BaseException) -> None:
        now = datetime.now(UTC)
        delivery.first_failure = delivery.first_failure or now
        decision = decide(exc, delivery.attempts, self._s.max_attempts)
        if decision.action == "retry":
            delay = self._backoff.delay_s(delivery.attempts)
            due = time.monotonic() + delay
            heapq.heappush(self._retries, (due, next(self._tiebreak), delivery))
            self._metrics.outcome("retried").inc()
            extra = {"error": str(decision.error), "retry_in_s": delay}
            self._log(delivery, "retry_scheduled", extra)
            return
        if not isinstance(exc, PipelineError):
            self._flush_lines()  # in order with the lines before it
            log.error("handler.bug", service=self.service, exc_info=exc)
        dead = dead_letter(
            delivery.inbound,
            queue=self._names.queue(self._queue_key),
            dead_letter_queue=self._names.dead_letter_queue(self._queue_key),
            dead_letter_exchange=dead_letter_exchange(self._queue_key),
            service=self.service,
            error=decision.error,
            attempts=delivery.attempts,
            first_failure=delivery.first_failure,
            now=now,
        )
        self._track(delivery, [dead], "dead_lettered")

    def _fire_due_retries(self) -> None:
        now = time.monotonic()
        due: list[Delivery] = []
        while self._retries and self._retries[0][0] <= now:
            _, _, delivery = heapq.heappop(self._retries)
            if delivery.generation == self._generation:
                due.append(delivery)
        if due:
            self._process(due)

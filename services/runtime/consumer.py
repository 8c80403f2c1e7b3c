"""The one consume loop every service plugs its handlers into.

A delivery is handled at once; what it produces is published without waiting; the
delivery is acked once the broker confirmed all of its outputs (`_settle_ready`),
while later deliveries are already being handled: confirms are pipelined. Failures go
through `failures.decide`: dead-letter now, or hold the delivery unacked and retry it
after a backoff while other deliveries keep flowing.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from kombu import Connection, Consumer

from services.runtime.acks import Acker
from services.runtime.amqp_transport import has_input, read_available, wait_for_input
from services.runtime.arrivals import Arrivals, Urgency
from services.runtime.config import RuntimeSettings
from services.runtime.dedup import DedupWindow
from services.runtime.deliveries import DeliveringConsumer
from services.runtime.errors import ConnectionLost, PermanentError, PipelineError, TransientError
from services.runtime.failures import Backoff, dead_letter, decide, is_dead_letter
from services.runtime.logging import LineBuffer, line_buffer
from services.runtime.messages import Inbound, Outgoing
from services.runtime.metrics import RuntimeMetrics, ServiceMetrics
from services.runtime.names import Names, dead_letter_exchange
from services.runtime.publisher import CONNECTION_ERRORS, ConfirmedPublisher

Handler = Callable[[Inbound], Sequence[Outgoing]]
# What a batch handler says of each input, in order: its outputs, or why it failed.
Result = Sequence[Outgoing] | BaseException
BatchHandler = Callable[[Sequence[Inbound]], Sequence[Result]]
READ_BATCH = 300  # frames read before handling and settling: three frames make one delivery
log = structlog.get_logger("runtime")


@dataclass
class Delivery:
    message: Any  # kombu.Message; only this module touches it
    inbound: Inbound
    generation: int
    attempts: int = 0
    first_failure: datetime | None = None
    started: float = field(default_factory=time.perf_counter)


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


def to_inbound(message: Any) -> Inbound:
    props = message.properties
    info = message.delivery_info
    return Inbound(
        body=message.body if isinstance(message.body, bytes) else str(message.body).encode(),
        routing_key=info.get("routing_key", ""),
        exchange=info.get("exchange", ""),
        content_type=message.content_type or None,
        headers=dict(message.headers or {}),
        message_id=props.get("message_id"),
        correlation_id=props.get("correlation_id"),
        redelivered=bool(info.get("redelivered")),
    )


class ConsumeLoop:
    def __init__(
        self,
        service: str,
        handlers: Mapping[str, Handler],
        settings: RuntimeSettings,
        connect: Callable[[], Connection],
        publisher: ConfirmedPublisher,
        metrics: RuntimeMetrics,
        dedup_inputs: bool = False,
        batch_handler: BatchHandler | None = None,
        queue: str | None = None,
        urgent: Urgency | None = None,
    ) -> None:
        self.service = service
        self._handlers = dict(handlers)
        self._routes: dict[str, Handler] = {}  # routing key -> its handler, as found
        self._batch_handler = batch_handler
        self._queue_key = queue or service  # which of the service's queues this loop reads
        self._arrived: Arrivals[Delivery] = Arrivals(urgent)
        self._releasing = False
        self._s = settings
        self._names = Names(settings.amqp_prefix)
        self._connect = connect
        self._publisher = publisher
        self._metrics = ServiceMetrics(metrics, service)
        self.registry = metrics.registry
        self._dedup_inputs = dedup_inputs
        self._published = DedupWindow(settings.dedup_window_size, settings.dedup_window_s)
        self._handled = DedupWindow(settings.dedup_window_size, settings.dedup_window_s)
        self._backoff = Backoff(settings.retry_initial_s, settings.retry_max_s)
        self._inflight: deque[InFlight] = deque()
        self._pending_ids: dict[str, InFlight] = {}
        self._retries: list[tuple[float, int, Delivery]] = []
        self._tiebreak = itertools.count()
        self._generation = 0
        self._conn: Connection | None = None
        self._consumer: Consumer | None = None
        self.stopping = False
        self.connected = False
        self._amqp = False
        self._raw: Any = None
        self._acker = Acker(multiple=False)
        self._info_enabled = True
        self._lines: LineBuffer | None = None  # the JSON lines of this loop, one write a turn
        # what a settling pass confirmed, recorded at its end (_settle_ready)
        self._confirmed_ids: list[str] = []
        self._settled: dict[str, int] = {}
        self._published_count = 0

    # -- handling -------------------------------------------------------------------
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
        self._metrics.consumed.inc()
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
        for delivery, result in zip(todo, results, strict=True):
            if isinstance(result, BaseException):
                self._fail(delivery, result)
            else:
                self._metrics.handler_seconds.observe(each)
                self._outputs(delivery, list(result))

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

    def _track(
        self,
        delivery: Delivery,
        outputs: list[Outgoing],
        outcome: str,
        deps: list[InFlight] | None = None,
    ) -> None:
        seqs = [self._publisher.publish(out) for out in outputs]
        deadline = time.monotonic() + self._s.confirm_timeout_s
        item = InFlight(delivery, outputs, seqs, outcome, deadline, deps or [])
        self._pending_ids.update((o.message_id, item) for o in outputs if not is_dead_letter(o))
        self._inflight.append(item)
        if not self._amqp:
            self._settle_ready()  # in-memory: nothing to wait for

    def _fail(self, delivery: Delivery, exc: BaseException) -> None:
        now = datetime.now(UTC)
        delivery.first_failure = delivery.first_failure or now
        decision = decide(exc, delivery.attempts, self._s.max_attempts)
        if decision.action == "retry":
            delay = self._backoff.delay_s(delivery.attempts)
            due = time.monotonic() + delay
            heapq.heappush(self._retries, (due, next(self._tiebreak), delivery))
            self._metrics.outcome("retried").inc()
            self._log(delivery, "retry_scheduled", error=str(decision.error), retry_in_s=delay)
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

    # -- settling --------------------------------------------------------------------
    def _settle_ready(self) -> None:
        """Ack (or fail) every delivery, oldest first, whose outputs are all confirmed.

        In order: confirms arrive in publish order, and a delivery that waits behind an
        older one costs a moment, never a wrong ack."""
        self._publisher.pump(0)
        try:
            self._settle_confirmed()
        finally:
            # once per pass, not per delivery: the dedup window's clock and eviction, and
            # the counters' locks
            self._published.add_all(self._confirmed_ids)
            self._confirmed_ids = []
            for outcome, count in self._settled.items():
                self._metrics.outcome(outcome).inc(count)
            if self._published_count:
                self._metrics.published.inc(self._published_count)
            self._settled, self._published_count = {}, 0
        self._acker.flush()
        self._flush_lines()

    def _settle_confirmed(self) -> None:
        while self._inflight:
            item = self._inflight[0]
            if not all(self._publisher.is_done(seq) for seq in item.seqs):
                # NOTE: while the broker is blocked (memory/disk alarm) confirms are
                # late, not lost; the runner bounds that wait (BLOCKED_TIMEOUT_S).
                if time.monotonic() < item.deadline or self._publisher.blocked_since:
                    break
                self._publisher.expire(item.seqs)
            self._inflight.popleft()
            for out in item.outputs:
                if self._pending_ids.get(out.message_id) is item:
                    del self._pending_ids[out.message_id]
            errors = [e for e in (self._publisher.take(seq) for seq in item.seqs) if e]
            if any(dep.failed for dep in item.depends_on):
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
        self._confirmed_ids += [o.message_id for o in item.outputs if not is_dead_letter(o)]
        # NOTE: a dead-lettered input was not handled: replayed from its DLQ (same
        # message id) it must be taken again, not acked as a duplicate and so lost.
        dead = item.outcome == "dead_lettered"
        if self._dedup_inputs and item.delivery.inbound.message_id and not dead:
            self._handled.add_all([item.delivery.inbound.message_id])
        outcome = item.outcome
        if outcome == "acked" and any(is_dead_letter(o) for o in item.outputs):
            outcome = "dead_lettered"  # the handler parked its own input (the notifier does)
        self._settled[outcome] = self._settled.get(outcome, 0) + 1
        self._published_count += len(item.outputs)
        extra = item.outputs[0].log if item.outputs else {}
        self._log(item.delivery, outcome, **extra)

    def _publish_failed(self, item: InFlight, error: PipelineError) -> None:
        if item.outcome == "dead_lettered":
            # NOTE: the DLQ itself refused it. Requeue rather than drop: the broker's
            # delivery-limit dead-letters it once redeliveries run out.
            self._acker.reject(item.delivery.message, requeue=True)
            self._log(item.delivery, "requeued", error=str(error), level="error")
            return
        self._fail(item.delivery, error)

    def _log(self, delivery: Delivery, outcome: str, level: str = "", **extra: Any) -> None:
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
            **extra,
        }
        if self._lines is not None:
            if level == "info" or self._lines.enabled(level):
                self._lines.add(level, "message.settled", fields)
        else:
            getattr(log, level)("message.settled", **fields)

    def _flush_lines(self) -> None:
        if self._lines is not None:
            self._lines.flush()

    # -- connection lifecycle -------------------------------------------------------------
    def start_consuming(self) -> None:
        self._generation += 1
        self._inflight, self._retries, self._pending_ids = deque(), [], {}
        self._conn = self._connect()
        try:
            self._conn.ensure_connection(max_retries=1)
            channel = self._conn.channel()
            # NOTE: quorum queues refuse global (channel-wide) QoS: prefetch per consumer.
            channel.basic_qos(0, self._s.prefetch, False)
            queue = self._names.queue(self._queue_key)
            self._consumer = DeliveringConsumer(
                channel,
                queues=[],
                on_message=self._on_message,
                on_decode_error=self._on_undecodable,
            )
            self._consumer.add_queue(_queue_ref(queue))
            self._consumer.consume()
            self._amqp = self._conn.transport.driver_type == "amqp"
            self._acker = Acker(multiple=self._amqp)
            self._info_enabled = bool(log.bind().is_enabled_for(logging.INFO))
            self._lines = line_buffer()
            self._raw = self._conn.connection if self._amqp else None
        except CONNECTION_ERRORS as exc:
            raise ConnectionLost(f"cannot consume: {exc}") from exc
        self.connected = True

    def run_once(self, idle_timeout: float = 0.5) -> None:
        """One turn of the loop: due retries, the deliveries that arrived, settling."""
        assert self._conn is not None
        self._fire_due_retries()
        blocked = self._publisher.blocked_since
        if blocked is not None and time.monotonic() - blocked > self._s.blocked_timeout_s:
            raise ConnectionLost(f"broker blocked publishing for over {self._s.blocked_timeout_s}s")
        try:
            if not self._amqp:
                if not len(self._arrived):  # held from the last turn: handle them first
                    self._conn.drain_events(timeout=self._next_wake(idle_timeout))
                self._handle_arrived()
            elif blocked is None and (len(self._arrived) or has_input(self._raw)):
                with self._publisher.corked():
                    self._read()
                    self._handle_arrived()
            else:  # idle: sleep until a delivery or a confirm arrives
                inputs = [self._raw, *self._publisher.input_connections()]
                wait_for_input(inputs, self._next_wake(idle_timeout))
        except TimeoutError:
            pass  # in-memory transport: nothing arrived
        except CONNECTION_ERRORS as exc:
            raise ConnectionLost(f"consumer connection lost: {exc}") from exc
        try:
            self._settle_ready()
        except CONNECTION_ERRORS as exc:
            raise ConnectionLost(f"connection lost while settling: {exc}") from exc

    def _read(self) -> None:
        if not self._arrived.reads_ahead:
            read_available(self._raw, limit=READ_BATCH)
        elif not self._arrived.full():  # the whole prefetch window, within a byte budget
            # An urgent delivery ends the read: it is handled (and its event published)
            # before the rest of the window is read.
            read_available(
                self._raw, limit=3 * self._s.prefetch + 30, stop=self._arrived.should_stop_reading
            )

    def _next_wake(self, idle_timeout: float) -> float:
        if not self._retries:
            return idle_timeout
        return max(0.0, min(idle_timeout, self._retries[0][0] - time.monotonic()))

    def heartbeat(self) -> None:
        try:
            if self._conn is not None and self._conn.transport.driver_type == "amqp":
                self._conn.heartbeat_check()
        except CONNECTION_ERRORS as exc:
            raise ConnectionLost(f"consumer heartbeat failed: {exc}") from exc
        self._publisher.heartbeat()

    def stop_consuming(self) -> None:
        """Graceful: no new deliveries, finish and ack what is in flight, then close.

        Deliveries still waiting for a retry stay unacked and return to the queue.
        """
        if self._consumer is not None:
            try:
                self._consumer.cancel()
                self._flush()
                self._let_acks_settle()
            except CONNECTION_ERRORS as exc:
                log.warning("stop.flush_failed", service=self.service, error=str(exc))
        self._flush_lines()
        held = len(self._retries)
        if held:
            log.info("stop.requeue_held_retries", service=self.service, count=held)
        self.drop_connection()

    def _let_acks_settle(self) -> None:
        # NOTE: a quorum queue can ignore acks that arrive just before their channel
        # closes and requeue those messages (rabbitmq-server#10327, open in 3.10-3.13).
        # A synchronous round trip proves the channel took the acks; a short pause
        # lets the queue apply them before the close.
        if self._conn is None or self._conn.transport.driver_type != "amqp":
            return
        channel = self._consumer.channel if self._consumer is not None else None
        if channel is not None:
            channel.queue_declare(self._names.queue(self._queue_key), passive=True)
        time.sleep(self._s.ack_settle_s)

    def drop_connection(self) -> None:
        """Forget everything tied to the old channel: its delivery tags are void."""
        self._flush_lines()  # what was logged before the loss (settled or not)
        self.connected = False
        self._generation += 1
        self._inflight, self._retries, self._pending_ids = deque(), [], {}
        self._arrived.clear()
        if self._conn is not None:
            self._releasing = True
            try:
                self._conn.release()
            except Exception as exc:  # already gone, or broke while closing: either way gone
                log.debug("connection.release_failed", service=self.service, error=repr(exc))
                # A close that broke halfway may leave the socket (and its consumer's
                # unacked deliveries) open until GC or a heartbeat timeout: drop it now.
                with contextlib.suppress(Exception):
                    self._conn.collect()
            finally:
                self._releasing = False
        self._conn, self._consumer = None, None


def _queue_ref(name: str) -> Any:
    from kombu import Queue

    # Passive-free reference: topology.declare made it; no_declare avoids redeclaring
    # with different arguments (which the broker would refuse).
    return Queue(name, no_declare=True)

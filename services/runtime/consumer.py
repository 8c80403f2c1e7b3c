"""The one consume loop every service plugs its handlers into.

A delivery is handled at once; what it produces is published without waiting; the
delivery is acked once the broker confirmed all of its outputs, while later deliveries
are already being handled: confirms are pipelined (services.runtime.settling). Failures
go through `failures.decide` (services.runtime.handling). This module has the loop's
state and its connection lifecycle.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from kombu import Connection, Consumer

from services.runtime.acks import Acker
from services.runtime.amqp_input import (
    has_input,
    read_available,
    read_while_arriving,
    wait_for_input,
)
from services.runtime.arrivals import Arrivals, Urgency
from services.runtime.config import RuntimeSettings
from services.runtime.dedup import DedupWindow
from services.runtime.deliveries import DeliveringConsumer, Delivery
from services.runtime.errors import ConnectionLost
from services.runtime.failures import Backoff
from services.runtime.handling import BatchHandler, Handler, Handling, Result
from services.runtime.logging import LineBuffer, line_buffer
from services.runtime.metrics import RuntimeMetrics, ServiceMetrics
from services.runtime.names import Names
from services.runtime.publisher import CONNECTION_ERRORS, ConfirmedPublisher
from services.runtime.settling import InFlight

__all__ = ["BatchHandler", "ConsumeLoop", "Handler", "Result"]
READ_BATCH = 300  # frames read before handling and settling: three frames make one delivery
# A backlog found at consume start is read in before the first turn (see _read), unless
# the broker's stream pauses this long or it takes longer than BACKLOG_READ_S in all.
BACKLOG_QUIET_S = 0.05
BACKLOG_READ_S = 1.0
log = structlog.get_logger("runtime")


class ConsumeLoop(Handling):
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
        self._backlog = 0  # deliveries the broker holds for this loop at consume start
        self._info_enabled = True
        self._lines: LineBuffer | None = None  # the JSON lines of this loop, one write a turn
        # what a settling pass confirmed, recorded at its end (_settle_ready)
        self._confirmed_ids: list[str] = []
        self._settled: dict[str, int] = {}
        self._published_count = 0
        self._consumed_count = 0

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
            if self._arrived.reads_ahead:
                ready = channel.queue_declare(queue, passive=True).message_count
                self._backlog = min(ready, self._s.prefetch)
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
                # NOTE: while the broker blocks our publishes, deliveries waiting on the
                # consumer socket are no reason to wake (they are not read then): only
                # the publisher's input (confirms, connection.unblocked) is, or the loop
                # would spin on a core until the block ends.
                inputs = self._publisher.input_connections()
                if blocked is None:
                    inputs = [self._raw, *inputs]
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
        elif self._backlog:
            # NOTE: at consume start the broker pushes a backlog's window over some
            # milliseconds; a first turn taken from its first frames would handle a
            # hundred requests before one marked urgent further back was even read
            # (after a restart during an outage, when it matters most). An urgent one
            # does not end this read: another may follow it in the window.
            backlog, self._backlog = self._backlog, 0
            arrived = self._arrived
            read_while_arriving(
                self._raw,
                done=lambda: len(arrived) >= backlog or arrived.full(),
                quiet_s=BACKLOG_QUIET_S,
                limit_s=BACKLOG_READ_S,
            )
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
        self._record_pass()  # and counted
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

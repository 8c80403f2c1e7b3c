"""Broker helpers of bench/intake_throughput.py and bench/sla_timer_scale.py: a counter
downstream on support.events, a publisher with async confirms, consumer counts, and the
pieces every bench prints (medians, spreads, percentiles). 127.0.0.1 only."""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pika
import pika.spec

from bench.e2e_support import pct
from services.upstream import pika_parameters

__all__ = ["Arrival", "Arrivals", "ConfirmedPublisher", "pct", "spread", "wait_consumers"]


def one_channel(
    url: str, on_channel: Callable[[Any], None], on_error: Callable[[BaseException], None]
) -> pika.SelectConnection:
    """A SelectConnection that opens one channel for `on_channel`; its ioloop stops when
    the connection closes, or when it cannot open (after `on_error`)."""

    def failed(conn: Any, exc: BaseException) -> None:
        on_error(exc)
        conn.ioloop.stop()

    return pika.SelectConnection(
        pika_parameters(url),
        on_open_callback=lambda c: c.channel(on_open_callback=on_channel),
        on_open_error_callback=failed,
        on_close_callback=lambda c, _reason: c.ioloop.stop(),
    )


@dataclass(frozen=True)
class Arrival:
    at: float  # wall clock (time.time()) when the counter read it
    routing_key: str
    message_id: str
    correlation_id: str | None
    body: bytes


class Arrivals(threading.Thread):
    """Counts what reaches a queue of its own bound to `exchange` with `keys`.

    The queue is classic, exclusive and auto-delete and is read without acks, so it adds
    as little broker work as a queue can; every pipeline of a bench is counted by the
    same kind of queue, so the counter costs them all the same. `done` is set when
    `expected` distinct message ids have arrived (a duplicate by id is kept, not counted)."""

    def __init__(self, url: str, exchange: str, keys: Sequence[str], expected: int) -> None:
        super().__init__(name="arrivals", daemon=True)
        self.url, self.exchange, self.keys, self.expected = url, exchange, list(keys), expected
        self.records: list[Arrival] = []
        self.ids: set[str] = set()
        self.nth_at = 0.0  # when the `expected`-th distinct id arrived
        self.ready, self.done, self.stopped = (
            threading.Event(),
            threading.Event(),
            threading.Event(),
        )
        self.error: BaseException | None = None
        self._conn: pika.SelectConnection | None = None
        self._channel: Any = None

    def run(self) -> None:
        try:
            self._conn = one_channel(self.url, self._on_channel, self._failed)
            self._conn.ioloop.start()
        except BaseException as exc:  # reported by whoever waits on `ready` or `done`
            self.error = exc
        finally:
            self.stopped.set()
            self.ready.set()  # a waiter must not hang when the counter could not start

    def _failed(self, exc: BaseException) -> None:
        self.error = exc

    def _on_channel(self, channel: Any) -> None:
        self._channel = channel
        channel.queue_declare("", exclusive=True, auto_delete=True, callback=self._on_queue)

    def _on_queue(self, frame: Any) -> None:
        queue = frame.method.queue
        keys = list(self.keys)

        def bind_next(_frame: Any = None) -> None:
            if keys:
                self._channel.queue_bind(queue, self.exchange, keys.pop(), callback=bind_next)
            else:
                self._channel.basic_consume(queue, self._on_message, auto_ack=True)
                self.ready.set()

        bind_next()

    def _on_message(self, _ch: Any, method: Any, props: Any, body: bytes) -> None:
        at = time.time()
        mid = props.message_id or ""
        self.records.append(Arrival(at, method.routing_key, mid, props.correlation_id, body))
        if mid not in self.ids:
            self.ids.add(mid)
            if len(self.ids) == self.expected:
                self.nth_at = at
                self.done.set()

    def start_and_wait(self, timeout: float = 30.0) -> Arrivals:
        self.start()
        if not self.ready.wait(timeout) or self.error is not None:
            raise RuntimeError(f"the counter on {self.exchange} did not start: {self.error}")
        return self

    def stop(self) -> None:
        if self._conn is not None and not self.stopped.is_set():
            self._conn.ioloop.add_callback_threadsafe(self._close)
        self.join(10)

    def _close(self) -> None:
        if self._conn is not None and self._conn.is_open:
            self._conn.close()

    @property
    def first_at(self) -> float:
        return self.records[0].at if self.records else math.nan


# (routing key, body, properties) of one message to publish
Item = tuple[str, bytes, pika.BasicProperties]


class ConfirmedPublisher:
    """Publishes `items` to `exchange` on a pika SelectConnection with async confirms,
    at most `window` unconfirmed at a time; `run` returns once every confirm arrived."""

    def __init__(self, url: str, exchange: str, items: Sequence[Item], window: int = 2000) -> None:
        self.url, self.exchange, self.items, self.window = url, exchange, items, window
        self.sent = self.acked = self.nacked = 0
        self.started = self.finished = 0.0  # wall clock of the first publish, the last confirm
        self.error: BaseException | None = None
        self._channel: Any = None
        self._conn: pika.SelectConnection | None = None

    def run(self) -> ConfirmedPublisher:
        self._conn = one_channel(self.url, self._on_channel, self._failed)
        self._conn.ioloop.start()
        if self.error is not None:
            raise RuntimeError(f"publishing to {self.exchange} failed: {self.error}")
        if self.nacked or self.acked < len(self.items):
            raise RuntimeError(
                f"{self.exchange}: {self.acked} of {len(self.items)} confirmed, "
                f"{self.nacked} refused"
            )
        return self

    def _failed(self, exc: BaseException) -> None:
        self.error = exc

    def _on_channel(self, channel: Any) -> None:
        self._channel = channel
        channel.add_on_close_callback(lambda _ch, reason: self._closed(reason))
        channel.confirm_delivery(self._on_confirm, callback=lambda _frame: self._fill())

    def _closed(self, reason: BaseException) -> None:
        if self.acked + self.nacked < len(self.items):
            self.error = reason
        if self._conn is not None and self._conn.is_open:
            self._conn.close()

    def _fill(self) -> None:
        self.started = self.started or time.time()
        while self.sent < len(self.items) and self.sent - self.acked - self.nacked < self.window:
            key, body, props = self.items[self.sent]
            self._channel.basic_publish(self.exchange, key, body, props)
            self.sent += 1

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        # delivery tags count publishes from 1; a multiple confirm settles every tag up to it
        settled = method.delivery_tag - (self.acked + self.nacked) if method.multiple else 1
        if isinstance(method, pika.spec.Basic.Ack):
            self.acked += settled
        else:
            self.nacked += settled
        if self.acked + self.nacked >= len(self.items):
            self.finished = time.time()
            self._channel.close()
        else:
            self._fill()


def message_count(url: str, queue: str) -> int:
    """Ready messages of `queue` (passive declare: unacked ones are not counted)."""
    conn = pika.BlockingConnection(pika_parameters(url))
    try:
        return int(conn.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        conn.close()


def wait_consumers(url: str, queue: str, want: int, timeout: float, alive: Any = None) -> float:
    """Polls (passive declares) until `queue` has `want` consumers; the wall-clock time it
    was first seen. `alive()` is called between polls (raise there when a process died)."""
    conn = pika.BlockingConnection(pika_parameters(url))
    try:
        channel = conn.channel()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if channel.queue_declare(queue, passive=True).method.consumer_count == want:
                return time.time()
            if alive is not None:
                alive()
            time.sleep(0.02)
        raise TimeoutError(f"{queue}: consumers did not reach {want} in {timeout:.0f} s")
    finally:
        conn.close()


# -- figures ---------------------------------------------------------------------------------
def spread(values: Sequence[float], fmt: str = ",.0f") -> str:
    """`median (min-max)`, the way both benches print a figure of several rounds."""
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{med:{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"

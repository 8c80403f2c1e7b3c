"""Publishing rows of a store's outbox with confirms, for workers beside a consume loop.

A service that changes state (sla_timer's clocks, the notifier's sends and digests)
writes the events in the same transaction as the change; `OutboxRelay` publishes them
from here and marks them sent only once the broker confirmed every one. The relay reads
outside any write transaction and marks rows sent in a short one of its own, so waiting
for the broker never holds the store's write lock, and it keeps trying while the broker
is away: the rows wait, and go out within a couple of seconds of its return.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from services.runtime.app import connection_factory
from services.runtime.config import RuntimeSettings
from services.runtime.errors import ConnectionLost, PipelineError, TransientError
from services.runtime.messages import Outgoing
from services.runtime.names import DEAD_LETTER_EXCHANGES, Names, dead_letter_exchange_by_queue
from services.runtime.publisher import ConfirmedPublisher

log = structlog.get_logger("runtime.worker")

# A turn (a batch of sends with their retries, a publish with confirms) ends well within
# this; a thread that died or hangs does not.
STALL_AFTER_S = 120.0


@dataclass(frozen=True)
class OutboxRow:
    id: int
    event_id: str
    routing_key: str
    body: str
    # Unprefixed; a dead letter's is its queue's dead-letter exchange (`<queue>.dlx`).
    exchange: str = "support.events"
    headers: dict[str, Any] = field(default_factory=dict)
    content_type: str = "application/cloudevents+json"

    @staticmethod
    def headers_from(text: str | None) -> dict[str, Any]:
        return dict(json.loads(text)) if text else {}


def worker_publisher(settings: RuntimeSettings, name: str) -> ConfirmedPublisher:
    """A confirmed publisher on its own connection, for one worker thread."""
    return ConfirmedPublisher(
        connection_factory(settings, name=name),
        Names(settings.amqp_prefix),
        settings.confirm_timeout_s,
        settings.blocked_timeout_s,
    )


def publish_rows(publisher: ConfirmedPublisher, rows: list[OutboxRow], timeout_s: float) -> None:
    """Publish `rows` to support.events; TransientError unless the broker confirmed all."""
    seqs = [publisher.publish(_outgoing(row)) for row in rows]
    publisher.wait(seqs, time.monotonic() + timeout_s)
    publisher.expire(seqs)
    errors = [e for e in (publisher.take(seq) for seq in seqs) if e is not None]
    if errors:
        raise TransientError(f"{len(errors)} outbox events not confirmed: {errors[0]}")


def _outgoing(row: OutboxRow) -> Outgoing:
    # NOTE: a dead letter written before `.dlx` existed has exchange "" (the default
    # exchange, which a least-privilege user may not write: the refusal would stall the
    # relay); it goes through its queue's `.dlx` instead.
    exchange = row.exchange or dead_letter_exchange_by_queue(row.routing_key)
    return Outgoing(
        exchange,
        row.routing_key,
        row.body.encode(),
        row.event_id,
        content_type=row.content_type,
        headers=row.headers,
        mandatory=not exchange or exchange in DEAD_LETTER_EXCHANGES,  # it must reach its queue
    )


class PublishingWorker:
    """A background worker with its own confirmed publisher: `step` until stopped, and
    on a failure in `retry_on` close the publisher and back off exponentially (15 s max).
    """

    retry_on: tuple[type[BaseException], ...] = (ConnectionLost, PipelineError)

    def __init__(self, settings: RuntimeSettings, name: str) -> None:
        self.settings = settings
        self.name = name
        self.publisher = worker_publisher(settings, name)
        self.connected = False
        self.beat = time.monotonic()  # start of the latest turn, for check_alive

    def step(self, stop: threading.Event) -> None:
        """One round of work, including its wait; override."""
        raise NotImplementedError

    def publish(self, rows: list[OutboxRow]) -> None:
        if not self.connected:
            self.publisher.open()
            self.connected = True
        publish_rows(self.publisher, rows, self.settings.confirm_timeout_s)

    def run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            self.beat = time.monotonic()
            try:
                self.step(stop)
                failures = 0
            except Exception as exc:
                failures += 1
                self.connected = False
                self.publisher.close()
                delay = min(15.0, 0.5 * 2**failures)
                if isinstance(exc, self.retry_on):
                    log.warning(f"{self.name}.retry", error=str(exc), retry_in_s=delay)
                else:  # a bug or bad data: say so loudly, then try again
                    log.error(f"{self.name}.crashed", retry_in_s=delay, exc_info=exc)
                stop.wait(delay)
        self.publisher.close()

    def check_alive(self) -> None:
        """For /healthz: raise when the worker has not started a turn for a while."""
        idle = time.monotonic() - self.beat
        if idle > STALL_AFTER_S:
            raise RuntimeError(f"{self.name} has not run for {idle:.0f} s")


class OutboxSource(Protocol):
    """A store's outbox as the relay sees it."""

    def unsent(self, limit: int) -> list[OutboxRow]:
        """The oldest unsent rows, read without taking the store's write lock."""
        ...

    def mark_sent(self, ids: list[int]) -> None:
        """Mark rows sent, in a short transaction of its own."""
        ...


class Leadership(Protocol):
    """Whether this replica may relay now (`__call__`); `release` gives it up."""

    def __call__(self) -> bool: ...

    def release(self) -> None: ...


RELAY_BATCH = 500
RECONNECT_MAX_S = 2.0  # a broker that returns is used again within this


class OutboxRelay:
    """Publishes an outbox with confirms until stopped: woken by `wake()` after a commit
    (or every `poll_s`), it sends the unsent rows, oldest first, and marks them sent.

    `leader` (optional) says whether this replica may relay now: replicas sharing a
    PostgreSQL store elect one relay, so no row is published twice by design."""

    def __init__(
        self,
        settings: RuntimeSettings,
        name: str,
        source: OutboxSource,
        poll_s: float = 0.2,
        leader: Leadership | None = None,
    ) -> None:
        self.settings = settings
        self.name = name
        self.source = source
        self.poll_s = poll_s
        self.leader = leader
        self.publisher = worker_publisher(settings, name)
        self.connected = False
        self.published = 0
        self._wake = threading.Event()
        self.beat = time.monotonic()

    def wake(self) -> None:
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            self.beat = time.monotonic()
            try:
                sent = self.turn()
                failures = 0
            except Exception as exc:  # the broker or the store: both come back
                failures += 1
                self._disconnect()
                delay = min(RECONNECT_MAX_S, 0.25 * 2**failures)
                level = "warning" if isinstance(exc, (ConnectionLost, PipelineError)) else "error"
                getattr(log, level)(
                    f"{self.name}.retry",
                    error=str(exc),
                    retry_in_s=delay,
                    exc_info=level == "error",
                )
                stop.wait(delay)
                continue
            if not sent:
                self._wake.wait(self.poll_s)
                self._wake.clear()
        self._disconnect()
        if self.leader is not None:
            self.leader.release()  # another replica (or the next start) takes over at once

    def turn(self) -> int:
        """Publish one batch; how many rows went out (0: nothing to do, or not leader)."""
        if self.leader is not None and not self.leader():
            return 0
        rows = self.source.unsent(RELAY_BATCH)
        if not rows:
            if self.connected:
                self.publisher.heartbeat()
            return 0
        if not self.connected:
            self.publisher.open()
            self.connected = True
        publish_rows(self.publisher, rows, self.settings.confirm_timeout_s)
        self.source.mark_sent([row.id for row in rows])
        self.published += len(rows)
        return len(rows)

    def _disconnect(self) -> None:
        self.connected = False
        self.publisher.close()

    def check_alive(self) -> None:
        idle = time.monotonic() - self.beat
        if idle > STALL_AFTER_S:
            raise RuntimeError(f"{self.name} has not run for {idle:.0f} s")

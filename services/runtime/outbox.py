"""Publishing rows of a store's outbox with confirms, for workers beside a consume loop.

A service whose background worker (sla_timer's scheduler, notifier's digests) changes
state writes the events in the same transaction as the change, then publishes them from
here and marks them sent only once the broker confirmed every one.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import structlog

from services.runtime.app import connection_factory
from services.runtime.config import RuntimeSettings
from services.runtime.errors import ConnectionLost, PipelineError, TransientError
from services.runtime.messages import Outgoing
from services.runtime.names import Names
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
    seqs = [
        publisher.publish(
            Outgoing("support.events", row.routing_key, row.body.encode(), row.event_id)
        )
        for row in rows
    ]
    publisher.wait(seqs, time.monotonic() + timeout_s)
    publisher.expire(seqs)
    errors = [e for e in (publisher.take(seq) for seq in seqs) if e is not None]
    if errors:
        raise TransientError(f"{len(errors)} outbox events not confirmed: {errors[0]}")


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

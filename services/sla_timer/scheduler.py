"""The scheduler thread: fire due clocks, publish the outbox, sleep until the next due.

It asks the store for what falls due next (an index on next_fire_at), so memory stays
flat whatever the number of open clocks. It never sleeps longer than `tick_s`, so a
clock created by the consume loop meanwhile fires at most `tick_s` late.
"""

from __future__ import annotations

import threading
import time

import structlog
from sqlalchemy.exc import SQLAlchemyError

from services.runtime.app import connection_factory
from services.runtime.config import RuntimeSettings
from services.runtime.errors import ConnectionLost, PipelineError, TransientError
from services.runtime.messages import Outgoing
from services.runtime.names import Names
from services.runtime.publisher import ConfirmedPublisher
from services.sla_timer.service import SlaTimer
from services.sla_timer.store import OutboxRow

log = structlog.get_logger("sla_timer.scheduler")


class Scheduler:
    def __init__(self, timer: SlaTimer, settings: RuntimeSettings, tick_s: float = 0.2) -> None:
        self.timer = timer
        self.settings = settings
        self.tick_s = tick_s
        self.publisher = ConfirmedPublisher(
            connection_factory(settings),
            Names(settings.amqp_prefix),
            settings.confirm_timeout_s,
            settings.blocked_timeout_s,
        )
        self._connected = False

    def run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                self._turn(stop)
                failures = 0
            except (ConnectionLost, PipelineError, SQLAlchemyError) as exc:
                failures += 1
                self._connected = False
                self.publisher.close()
                delay = min(15.0, 0.5 * 2**failures)
                log.warning("scheduler.retry", error=str(exc), retry_in_s=delay)
                stop.wait(delay)
        self.publisher.close()

    def _turn(self, stop: threading.Event) -> None:
        if not self._connected:
            self.publisher.open()
            self._connected = True
        fired = self.timer.fire()
        sent = self.timer.relay(self._publish)
        if fired or sent:
            if fired:
                log.info("sla.fired", clocks=fired, published=sent)
            return  # more may be due right away
        self.publisher.heartbeat()
        next_due = self.timer.store.next_due()
        wait = self.tick_s
        if next_due is not None:
            wait = max(0.0, min(wait, (next_due - self.timer.now()).total_seconds()))
        stop.wait(wait)

    def _publish(self, rows: list[OutboxRow]) -> None:
        seqs = [
            self.publisher.publish(
                Outgoing("support.events", row.routing_key, row.body.encode(), row.event_id)
            )
            for row in rows
        ]
        self.publisher.wait(seqs, time.monotonic() + self.settings.confirm_timeout_s)
        self.publisher.expire(seqs)
        errors = [e for e in (self.publisher.take(seq) for seq in seqs) if e is not None]
        if errors:
            raise TransientError(f"{len(errors)} outbox events not confirmed: {errors[0]}")

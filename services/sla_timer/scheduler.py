"""The scheduler thread: fire due clocks, publish the outbox, sleep until the next due.

It asks the store for what falls due next (an index on next_fire_at), so memory stays
flat whatever the number of open clocks. It never sleeps longer than `tick_s`, so a
clock created by the consume loop meanwhile fires at most `tick_s` late.
"""

from __future__ import annotations

import threading

import structlog
from sqlalchemy.exc import SQLAlchemyError

from services.runtime.config import RuntimeSettings
from services.runtime.errors import ConnectionLost, PipelineError
from services.runtime.outbox import PublishingWorker
from services.sla_timer.service import SlaTimer

log = structlog.get_logger("sla_timer.scheduler")


class Scheduler(PublishingWorker):
    retry_on = (ConnectionLost, PipelineError, SQLAlchemyError)

    def __init__(self, timer: SlaTimer, settings: RuntimeSettings, tick_s: float = 0.2) -> None:
        super().__init__(settings, "sla_timer.scheduler")
        self.timer = timer
        self.tick_s = tick_s

    def step(self, stop: threading.Event) -> None:
        if not self.connected:  # open at once: the heartbeat below keeps it alive
            self.publisher.open()
            self.connected = True
        fired = self.timer.fire()
        sent = self.timer.relay(self.publish)
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

"""The scheduler thread: fire due clocks into the outbox, sleep until the next due.

It asks the store for what falls due next (an index on next_fire_at), so memory stays
flat whatever the number of open clocks. It never sleeps longer than `tick_s`, so a
clock created by the consume loop meanwhile fires at most `tick_s` late. It never
touches the broker: what it fires waits in the outbox for the relay
(services.runtime.outbox.OutboxRelay), so clocks go on firing on time while the broker
is away and their events go out as soon as it is back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from services.runtime.outbox import STALL_AFTER_S
from services.sla_timer.service import SlaTimer

log = structlog.get_logger("sla_timer.scheduler")


class Scheduler:
    def __init__(
        self, timer: SlaTimer, tick_s: float = 0.2, on_fired: Callable[[], None] | None = None
    ) -> None:
        self.timer = timer
        self.tick_s = tick_s
        self.on_fired = on_fired  # e.g. wake the relay
        self.beat = time.monotonic()

    def run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            self.beat = time.monotonic()
            try:
                wait = self.step()
                failures = 0
            except Exception as exc:  # the store is away, or a bug: log, back off, go on
                failures += 1
                wait = min(5.0, 0.1 * 2**failures)
                log.error("sla_timer.scheduler.retry", retry_in_s=wait, exc_info=exc)
            if wait > 0:
                stop.wait(wait)

    def step(self) -> float:
        """Fire what is due; how long to sleep before the next turn."""
        fired = self.timer.fire()
        if fired:
            log.info("sla.fired", clocks=fired)
            if self.on_fired is not None:
                self.on_fired()
            return 0.0  # more may be due right away
        next_due = self.timer.store.next_due()
        if next_due is None:
            return self.tick_s
        return max(0.0, min(self.tick_s, (next_due - self.timer.now()).total_seconds()))

    def check_alive(self) -> None:
        """For /healthz: raise when the thread has not started a turn for a while."""
        idle = time.monotonic() - self.beat
        if idle > STALL_AFTER_S:
            raise RuntimeError(f"sla_timer.scheduler has not run for {idle:.0f} s")

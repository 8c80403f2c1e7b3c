"""The notifier's background worker: team digests, their events, the hourly coverage check.

Runs beside the consume loop (ServiceSpec.workers). Each turn it re-checks coverage
when an hour has passed (logging each gap as an error and posting them to the team
channel), sends the pending team notices as one digest when `digest_due` says so, and
publishes the digest's escalation.sent events from the outbox with confirms.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from sqlalchemy.exc import SQLAlchemyError

from schemas.events import CloudEvent, EscalationSent, make_event
from services.notifier.delivery import Deliverer
from services.notifier.digest import DigestEntry, DigestQueue, digest_due
from services.notifier.metrics import NotifierMetrics
from services.notifier.oncall import coverage_gaps
from services.notifier.render import render_coverage
from services.notifier.service import escalation_fields
from services.runtime.config import RuntimeSettings
from services.runtime.errors import ConnectionLost, PipelineError
from services.runtime.events import now_utc
from services.runtime.outbox import PublishingWorker

log = structlog.get_logger("notifier.worker")

COVERAGE_EVERY = timedelta(hours=1)
RETRY_AFTER = timedelta(seconds=30)  # a digest that failed to send, at most this often


class NotifierWorker(PublishingWorker):
    retry_on = (ConnectionLost, PipelineError, SQLAlchemyError)

    def __init__(
        self,
        digests: DigestQueue,
        deliverer: Deliverer,
        settings: RuntimeSettings,
        clock: Callable[[], datetime] = now_utc,
        tick_s: float = 1.0,
        metrics: NotifierMetrics | None = None,
    ) -> None:
        super().__init__(settings, "notifier.worker")
        self.metrics = metrics or NotifierMetrics()
        self.digests = digests
        self.deliverer = deliverer
        self.oncall = deliverer.oncall
        self.now = clock
        self.tick_s = tick_s
        self._next_coverage: datetime | None = None
        self._next_try: datetime | None = None

    def step(self, stop: threading.Event) -> None:
        self.turn()
        stop.wait(self.tick_s)

    def turn(self) -> None:
        now = self.now()
        if self._next_coverage is None or now >= self._next_coverage:
            self._next_coverage = now + COVERAGE_EVERY
            self.check_coverage(now)
        self.flush(now)
        self.relay()

    def check_coverage(self, now: datetime) -> list[tuple[datetime, datetime]]:
        gaps = coverage_gaps(self.oncall, now)
        for start, end in gaps:
            log.error("oncall.coverage_gap", level=1, start=start.isoformat(), end=end.isoformat())
        if gaps and self.oncall.team_channel is not None:
            try:
                self.deliverer.send_team(render_coverage(gaps, self.oncall), key="coverage")
            except PipelineError as exc:  # logged above already; the next hour tries again
                log.error("oncall.coverage_post_failed", error=str(exc))
        return gaps

    def flush(self, now: datetime) -> int:
        """Send the pending team notices as one digest when due; how many were sent."""
        if self._next_try is not None and now < self._next_try:
            return 0
        with self.digests.flushing() as conn:
            if conn is None:
                return 0  # another replica holds the flush
            pending = self.digests.pending(conn)
            interval = self.oncall.digest_interval
            if not digest_due(bool(pending), self.digests.last_sent_at(conn), now, interval):
                return 0
            try:
                self.deliverer.send_digest([(e.notification, e.notes) for e in pending], now)
            except PipelineError as exc:
                self._next_try = now + min(interval, RETRY_AFTER)
                self.metrics.failed.labels("team_digest").inc(len(pending))
                log.error("notifier.digest_failed", notices=len(pending), error=str(exc))
                return 0
            self._next_try = None
            self.digests.mark_sent(pending, [self._sent_event(e, now) for e in pending], now)
        self.metrics.sent.labels("team_digest").inc(len(pending))
        log.info("notifier.digest_sent", notices=len(pending))
        return len(pending)

    def relay(self) -> int:
        rows = self.digests.unpublished()
        if not rows:
            if self.connected:
                self.publisher.heartbeat()
            return 0
        self.publish(rows)
        self.digests.mark_published([r.id for r in rows], self.now())
        return len(rows)

    @staticmethod
    def _sent_event(entry: DigestEntry, now: datetime) -> CloudEvent:
        n = entry.notification
        data = EscalationSent(**escalation_fields(n), sent_at=now)
        return make_event(
            data,
            service="notifier",
            subject=n.ticket_id,
            cause=f"{n.notification_key}:sent",
            correlation_id=entry.correlation_id,
            now=now,
        )

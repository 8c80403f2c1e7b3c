"""The notifier's background worker: team digests, their events, the hourly coverage check.

Runs beside the consume loop (ServiceSpec.workers). Each turn it re-checks coverage
when an hour has passed (logging each gap as an error and posting them to the team
channel) and sends the pending team notices as one digest when `digest_due` says so;
the digest's escalation.sent events go to the outbox, which the relay publishes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from sqlalchemy.exc import SQLAlchemyError

from schemas.events import CloudEvent, EscalationFailed, EscalationSent, make_event
from services.notifier.delivery import Deliverer
from services.notifier.digest import DigestEntry, DigestQueue, digest_due
from services.notifier.metrics import NotifierMetrics
from services.notifier.oncall import coverage_gaps
from services.notifier.outcomes import escalation_fields
from services.notifier.render import DIGEST_MAX, render_coverage
from services.runtime.config import RuntimeSettings
from services.runtime.errors import ConnectionLost, PermanentError, PipelineError
from services.runtime.events import now_utc
from services.runtime.outbox import PublishingWorker

log = structlog.get_logger("notifier.worker")

COVERAGE_EVERY = timedelta(hours=1)
RETRY_AFTER = timedelta(seconds=30)  # a digest that failed to send, at most this often
BATCHES = 5  # digest messages at most per flush, after a backlog


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

    def check_coverage(self, now: datetime) -> list[tuple[datetime, datetime]]:
        gaps = coverage_gaps(self.oncall, now)
        self.metrics.coverage.observe(gaps, now)  # the alert rules watch this
        for start, end in gaps:
            log.error("oncall.coverage_gap", level=1, start=start.isoformat(), end=end.isoformat())
        if gaps and self.oncall.team_channel is not None:
            try:
                self.deliverer.send_team(render_coverage(gaps, self.oncall), key="coverage")
            except PipelineError as exc:  # logged above already; the next hour tries again
                log.error("oncall.coverage_post_failed", error=str(exc))
        return gaps

    def flush(self, now: datetime) -> int:
        """Send the pending team notices when a digest is due (one message per
        DIGEST_MAX of them); how many went out."""
        if self._next_try is not None and now < self._next_try:
            return 0
        with self.digests.flushing() as conn:
            if conn is None:
                return 0  # another replica holds the flush
            pending = self.digests.pending(conn, limit=DIGEST_MAX * BATCHES)
            interval = self.oncall.digest_interval
            if not digest_due(bool(pending), self.digests.last_sent_at(conn), now, interval):
                return 0
            sent = 0
            for start in range(0, len(pending), DIGEST_MAX):
                batch = pending[start : start + DIGEST_MAX]
                if not self._send(batch, now):
                    break
                sent += len(batch)
        return sent

    def _send(self, batch: list[DigestEntry], now: datetime) -> bool:
        try:
            self.deliverer.send_digest([(e.notification, e.notes) for e in batch], now)
        except PermanentError as exc:  # e.g. a revoked webhook: retrying cannot help
            log.error("notifier.digest_failed", notices=len(batch), error=str(exc), retry=False)
            events = [self._event(e, EscalationFailed, now, str(exc)) for e in batch]
            self.digests.mark_done(batch, events, now, "failed")
            self.metrics.failed.labels("team_digest").inc(len(batch))
            return False
        except PipelineError as exc:  # the channel is down: the notices wait, in order
            retry_in = min(self.oncall.digest_interval, RETRY_AFTER)
            self._next_try = now + retry_in
            log.error("notifier.digest_failed", notices=len(batch), error=str(exc), retry=True)
            return False
        self._next_try = None
        self.digests.mark_done(
            batch, [self._event(e, EscalationSent, now) for e in batch], now, "sent"
        )
        self.metrics.sent.labels("team_digest").inc(len(batch))
        log.info("notifier.digest_sent", notices=len(batch))
        return True

    @staticmethod
    def _event(
        entry: DigestEntry,
        kind: type[EscalationSent] | type[EscalationFailed],
        now: datetime,
        error: str = "",
    ) -> CloudEvent:
        n = entry.notification
        if kind is EscalationSent:
            data: EscalationSent | EscalationFailed = EscalationSent(
                **escalation_fields(n), sent_at=now
            )
            cause = f"{n.notification_key}:sent"  # as the consume loop's, for a re-emit
        else:
            data = EscalationFailed(
                **escalation_fields(n), failed_at=now, attempts=1, error=error[:500]
            )
            cause = f"{n.notification_key}:failed:digest"
        return make_event(
            data,
            service="notifier",
            subject=n.ticket_id,
            cause=cause,
            correlation_id=entry.correlation_id,
            now=now,
        )

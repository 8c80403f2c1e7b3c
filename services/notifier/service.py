"""notifier's edge: sla and ticket events in, notifications out, exactly once per key.

For each event: update what is known about the ticket, decide who must hear about it
(pure), then send every notification whose key the ledger has not recorded as sent,
record it, and emit escalation.sent. A send that fails after its channel's retries is
recorded, emitted as escalation.failed, and the input is dead-lettered with the reason
(it can be replayed from the DLQ; keys already sent are skipped then). Team notices are
queued for the next digest instead (services.notifier.digest).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from schemas.events import CloudEvent, EscalationFailed, EscalationSent, EventData, make_event
from services.notifier.decisions import Notification, decide_event
from services.notifier.delivery import Deliverer
from services.notifier.digest import DigestEntry, DigestQueue
from services.notifier.ledger import Ledger
from services.notifier.metrics import NotifierMetrics
from services.notifier.notes import note_event, record_pages
from services.runtime.errors import PipelineError
from services.runtime.events import now_utc, parse_event
from services.runtime.failures import dead_letter
from services.runtime.messages import Inbound, Outgoing
from services.runtime.names import Names

SERVICE = "notifier"


class Notifier:
    def __init__(
        self,
        ledger: Ledger,
        deliverer: Deliverer,
        names: Names,
        clock: Callable[[], datetime] = now_utc,
        digests: DigestQueue | None = None,
        metrics: NotifierMetrics | None = None,
    ) -> None:
        self.metrics = metrics or NotifierMetrics()
        self.digests = digests  # None: team notices are sent at once, one per message
        self.ledger = ledger
        self.deliverer = deliverer
        self.names = names
        self.now = clock

    def handle(self, inbound: Inbound) -> list[Outgoing]:
        event, data = parse_event(inbound)
        before = self.ledger.notes(event.subject)
        notifications = decide_event(event, before, self.deliverer.oncall)
        notes = record_pages(note_event(before, data), notifications)
        self.ledger.save_notes(notes)
        outputs: list[Outgoing] = []
        failed: list[tuple[Notification, PipelineError]] = []
        for n in notifications:
            sent_at = self.ledger.sent_at(n.notification_key)
            if sent_at is not None:
                # Redelivered, replayed or restarted: never sent twice. Its escalation.sent
                # is emitted again (same event id) since the first may have died unconfirmed
                # with a crashed process; consumers drop the repeat by id.
                outputs.append(self._event(event, n, self._sent(n, sent_at)))
                continue
            now = self.now()
            if n.channel == "team_digest" and self.digests is not None:
                self.digests.add(
                    DigestEntry(notification=n, notes=notes, correlation_id=event.correlationid),
                    now,
                )
                continue  # the digest worker sends it and emits its escalation.sent
            try:
                self.deliverer.send(n, notes, now)
            except PipelineError as exc:
                self.ledger.record(n.notification_key, "failed", now, str(exc))
                self.metrics.failed.labels(n.channel).inc()
                failed.append((n, exc))
                outputs.append(self._event(event, n, self._failed(n, exc, now)))
                continue
            self.ledger.record(n.notification_key, "sent", now)
            self.metrics.sent.labels(n.channel).inc()
            outputs.append(self._event(event, n, self._sent(n, now)))
        if failed:
            outputs.append(self._dead_letter(inbound, failed))
        return outputs

    @staticmethod
    def _sent(n: Notification, now: datetime) -> EscalationSent:
        return EscalationSent(**escalation_fields(n), sent_at=now)

    @staticmethod
    def _failed(n: Notification, exc: PipelineError, now: datetime) -> EscalationFailed:
        return EscalationFailed(
            **escalation_fields(n), failed_at=now, attempts=1, error=str(exc)[:500]
        )

    def _event(self, cause: CloudEvent, n: Notification, data: EventData) -> Outgoing:
        kind = "sent" if isinstance(data, EscalationSent) else f"failed:{cause.id}"
        return Outgoing.event(
            make_event(
                data,
                service=SERVICE,
                subject=n.ticket_id,
                cause=f"{n.notification_key}:{kind}",
                correlation_id=cause.correlationid,
                now=self.now(),
            )
        )

    def _dead_letter(
        self, inbound: Inbound, failed: list[tuple[Notification, PipelineError]]
    ) -> Outgoing:
        keys = ", ".join(n.notification_key for n, _ in failed)
        first = failed[0][1]
        error = type(first)(f"{len(failed)} notification(s) not delivered ({keys}): {first}")
        error.reason = first.reason
        now = self.now()
        return dead_letter(
            inbound,
            queue=self.names.queue(SERVICE),
            dead_letter_queue=self.names.dead_letter_queue(SERVICE),
            service=SERVICE,
            error=error,
            attempts=1,
            first_failure=now,
            now=now,
        )


def escalation_fields(n: Notification) -> dict[str, object]:
    return {
        "ticket_id": n.ticket_id,
        "reason": n.reason,
        "level": n.level,
        "person": n.person,
        "channel": n.channel,
        "notification_key": n.notification_key,
    }

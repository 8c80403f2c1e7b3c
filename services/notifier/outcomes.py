"""What becomes of a queued notification, and the events that say so (one transaction each).

- sent: the row is done; `escalation.sent` names the channel it went by (a fallback too).
- failed, retried: the next contact method (or round) is scheduled; after a page's first
  full round of failures with nobody at its level reached, the next level is paged.
- given up (budget spent, or refused for good): `escalation.failed` with the attempts
  and the last error, a dead letter in `notifier.urgent.dead` that a replay sends again,
  and a notice to the team channel.
- no longer needed (ticket closed, or acknowledged for a reminder): `escalation.cancelled`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.engine import Connection

from schemas.events import (
    CloudEvent,
    EscalationCancelled,
    EscalationFailed,
    EscalationSent,
    EventData,
    make_event,
)
from services.notifier.decisions import TEAM, Notification, escalate
from services.notifier.digest import DigestEntry, DigestQueue
from services.notifier.ledger import Ledger
from services.notifier.metrics import NotifierMetrics
from services.notifier.notes import TicketNotes, record_pages
from services.notifier.oncall_model import OnCall
from services.notifier.retry_plan import GiveUp, SendRetry, after_failure
from services.notifier.sends import SendQueue, SendRow, dead_letter_body
from services.runtime.errors import PipelineError
from services.runtime.names import Names, dead_letter_exchange

log = structlog.get_logger("notifier")
SERVICE = "notifier"
NOTIFICATION_TYPE = "application/vnd.premium-support.notification+json"


def escalation_fields(n: Notification, channel: str | None = None) -> dict[str, object]:
    return {
        "ticket_id": n.ticket_id,
        "reason": n.reason,
        "level": n.level,
        "person": n.person,
        "channel": channel or n.channel,
        "notification_key": n.notification_key,
    }


def event_row(cloud: CloudEvent) -> dict[str, Any]:
    return {"event_id": cloud.id, "routing_key": cloud.routing_key, "body": cloud.model_dump_json()}


class Outcomes:
    def __init__(
        self,
        sends: SendQueue,
        ledger: Ledger,
        digests: DigestQueue | None,
        oncall: OnCall,
        names: Names,
        retry: SendRetry,
        metrics: NotifierMetrics | None = None,
    ) -> None:
        self.sends = sends
        self.ledger = ledger
        self.digests = digests
        self.oncall = oncall
        self.names = names
        self.retry = retry
        self.metrics = metrics or NotifierMetrics()

    @staticmethod
    def no_longer_needed(row: SendRow, notes: TicketNotes | None) -> str | None:
        """Why a queued send should not go out now, or None to send it."""
        n = row.notification
        if notes is None or n.action not in ("trigger", "notify"):
            return None  # acknowledge / resolve follow-ups always go
        if notes.closed is not None:
            return f"the ticket is closed ({notes.closed.replace('_', ' ')})"
        if row.unless_acknowledged and notes.acknowledged:
            return f"acknowledged by {notes.acknowledged_by or 'on-call'}"
        return None

    def _event(self, row: SendRow, data: EventData, kind: str, now: datetime) -> dict[str, Any]:
        return event_row(
            make_event(
                data,
                service=SERVICE,
                subject=row.notification.ticket_id,
                cause=f"{row.key}:{kind}",
                correlation_id=row.correlation_id,
                now=now,
            )
        )

    def sent(self, conn: Connection, row: SendRow, method: str, at: datetime) -> None:
        self.sends.update(
            conn, row.key, status="sent", attempts=row.attempts + 1, done_at=at, done_channel=method
        )
        data = EscalationSent(**escalation_fields(row.notification, method), sent_at=at)
        self.ledger.add_outbox(conn, [self._event(row, data, "sent", at)])
        if method != row.notification.channel:
            log.warning("notification.sent_by_fallback", key=row.key, channel=method)

    def cancel(self, row: SendRow, why: str, now: datetime) -> None:
        with self.ledger.engine.begin() as conn:
            self.cancel_in(conn, row, why, now)

    def cancel_in(self, conn: Connection, row: SendRow, why: str, now: datetime) -> None:
        self.sends.update(conn, row.key, status="cancelled", done_at=now, last_error=why)
        data = EscalationCancelled(**escalation_fields(row.notification), cancelled_at=now, why=why)
        self.ledger.add_outbox(conn, [self._event(row, data, f"cancelled:{now.isoformat()}", now)])
        self.metrics.cancelled.inc()
        log.info("notification.cancelled", key=row.key, why=why)

    def failed(
        self,
        conn: Connection,
        row: SendRow,
        method: str,
        error: PipelineError,
        permanent: bool,
        now: datetime,
        jitter: float,
    ) -> None:
        n = row.notification
        plan = after_failure(
            method_index=row.method_index,
            methods=len(n.methods),
            queued_at=row.queued_at,
            permanent=permanent,
            now=now,
            retry=self.retry,
            jitter=jitter,
        )
        text = f"{n.person} by {method}: {error}"[:500]
        attempts = row.attempts + 1
        if isinstance(plan, GiveUp):
            self._give_up(conn, row, attempts, f"{text} ({plan.why})", now)
            self._maybe_escalate(conn, row, now)
            return
        self.sends.update(
            conn,
            row.key,
            method_index=plan.method_index,
            attempts=attempts,
            next_attempt_at=plan.at,
            last_error=text,
        )
        if plan.first_round_done:
            self._maybe_escalate(conn, row, now)

    def _give_up(
        self, conn: Connection, row: SendRow, attempts: int, error: str, now: datetime
    ) -> None:
        n = row.notification
        self.sends.update(
            conn, row.key, status="dead", attempts=attempts, done_at=now, last_error=error
        )
        failed = EscalationFailed(
            **escalation_fields(n), failed_at=now, attempts=attempts, error=error
        )
        rows = [
            self._event(row, failed, f"failed:{now.isoformat()}", now),
            self._letter(row, attempts, error, now),
        ]
        self.ledger.add_outbox(conn, rows)
        self.metrics.failed.labels(n.channel).inc()
        log.error("notification.given_up", key=row.key, attempts=attempts, error=error)
        if self.digests is not None and self.oncall.team_channel is not None and n.person != TEAM:
            notes = self.ledger.notes_in(conn, [n.ticket_id]).get(n.ticket_id)
            notice = Notification(
                ticket_id=n.ticket_id,
                reason=f"undelivered.{n.reason.split('.')[0]}",
                level=n.level,
                person=TEAM,
                channel="team_digest",
                action="notify",
            )
            entry = DigestEntry(
                notification=notice,
                notes=notes or TicketNotes(ticket_id=n.ticket_id),
                correlation_id=row.correlation_id,
            )
            self.digests.add_in(conn, [entry], now)

    def _letter(self, row: SendRow, attempts: int, error: str, now: datetime) -> dict[str, Any]:
        """The dead letter, through `notifier.urgent.dlx` to `notifier.urgent.dead`;
        replayed, it goes back to `notifier.urgent` (by name: x-original-exchange ""),
        where the notifier sends it again or cancels it."""
        queue = self.names.queue("notifier_urgent")
        headers = {
            "x-error": error,
            "x-error-reason": "undeliverable",
            "x-service": SERVICE,
            "x-attempts": attempts,
            "x-first-failure-at": row.queued_at.isoformat(),
            "x-last-failure-at": now.isoformat(),
            "x-original-exchange": "",
            "x-original-routing-key": queue,
            "x-original-queue": queue,
            "x-notification-key": row.key,
        }
        return {
            "event_id": "dead-"
            + hashlib.sha256(f"{row.key}|{now.isoformat()}".encode()).hexdigest()[:40],
            "routing_key": self.names.dead_letter_queue("notifier_urgent"),
            "body": dead_letter_body(row),
            "exchange": dead_letter_exchange("notifier_urgent"),
            "headers": _json(headers),
            "content_type": NOTIFICATION_TYPE,
        }

    def _maybe_escalate(self, conn: Connection, row: SendRow, now: datetime) -> None:
        """Page the next level once nobody at this page's level was reached."""
        n = row.notification
        if n.kind != "page":
            return
        level = self.sends.level_rows(conn, n)
        others = [r for r in level if r.key != row.key]
        if any(r.status == "sent" for r in level):
            return
        if any(r.status == "pending" and r.attempts < len(r.notification.methods) for r in others):
            return  # someone at this level has not been tried by every method yet
        already = self.sends.people_paged(conn, n)
        nxt = escalate(n, self.oncall, now, already)
        if not nxt:
            return
        self.sends.add_many(
            conn,
            [SendQueue.values(x, row.correlation_id, row.unless_acknowledged, now) for x in nxt],
        )
        notes = self.ledger.notes_in(conn, [n.ticket_id]).get(n.ticket_id)
        if notes is not None:
            self.ledger.save_notes_in(conn, [record_pages(notes, nxt)])
        log.warning(
            "notification.escalated",
            ticket_id=n.ticket_id,
            reason=n.reason,
            to_level=n.level + 1,
            people=[x.person for x in nxt],
        )


def _json(headers: dict[str, Any]) -> str:
    return json.dumps(headers)

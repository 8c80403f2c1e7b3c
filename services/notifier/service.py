"""notifier's edge: sla and ticket events in, notifications queued, exactly once per key.

`handle_batch` runs on a consume loop (the page-worthy queue and the bulk queue each have
one) with a turn's worth of deliveries: it loads their tickets' notes in one query,
updates them and decides who must hear (pure, event by event, in order), and writes the
changed notes, the sends (services.notifier.sends) and the team notices (digest) in ONE
transaction; the runtime acks the batch once it committed. Sending happens on the
sender's threads (services.notifier.sender), never in the consume loop. A send's key is
queued once, so a redelivered or replayed event sends nothing twice.

A dead-lettered notification replayed from `notifier.urgent.dead` comes back here: it is
queued again (a fresh retry budget) unless it is no longer needed, which is recorded with
an `escalation.cancelled` event; nothing replayed is silently dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from schemas.events import CloudEvent, EventData
from services.notifier.decisions import Notification, decide_event, reason_word
from services.notifier.digest import DigestEntry, DigestQueue
from services.notifier.ledger import Ledger
from services.notifier.notes import TicketNotes, note_event, record_pages
from services.notifier.oncall_model import OnCall
from services.notifier.outcomes import NOTIFICATION_TYPE, Outcomes
from services.notifier.sends import SendQueue
from services.runtime.consumer import Result
from services.runtime.errors import PermanentError, PipelineError
from services.runtime.events import now_utc, parse_event
from services.runtime.messages import Inbound, Outgoing

log = structlog.get_logger("notifier")
SERVICE = "notifier"


@dataclass
class _Batch:
    notes: dict[str, TicketNotes]
    changed: set[str] = field(default_factory=set)
    sends: list[dict[str, Any]] = field(default_factory=list)
    notices: list[DigestEntry] = field(default_factory=list)


class Notifier:
    def __init__(
        self,
        ledger: Ledger,
        sends: SendQueue,
        outcomes: Outcomes,
        oncall: OnCall,
        digests: DigestQueue | None = None,
        clock: Callable[[], datetime] = now_utc,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.sends = sends
        self.outcomes = outcomes
        self.oncall = oncall
        self.digests = digests  # None: team notices go through the send queue one by one
        self.now = clock
        self.on_commit = on_commit  # e.g. wake the sender

    def handle(self, inbound: Inbound) -> list[Outgoing]:
        """One delivery (tests, tools): `handle_batch` of one, raising its failure."""
        (result,) = self.handle_batch([inbound])
        if isinstance(result, BaseException):
            raise result
        return list(result)

    def handle_batch(self, inbounds: Sequence[Inbound]) -> list[Result]:
        results: list[Result] = [[] for _ in inbounds]
        events: list[tuple[int, CloudEvent, EventData]] = []
        replays: list[tuple[int, dict[str, Any]]] = []
        for i, inbound in enumerate(inbounds):
            try:
                if inbound.content_type == NOTIFICATION_TYPE:
                    replays.append((i, _replayed(inbound)))
                else:
                    event, data = parse_event(inbound)
                    events.append((i, event, data))
            except PermanentError as exc:
                results[i] = exc
        if not events and not replays:
            return results
        now = self.now()
        with self.ledger.engine.begin() as conn:
            tickets = {e.subject for _, e, _ in events}
            notes = self.ledger.notes_in(conn, tickets)
            batch = _Batch(notes)
            for i, event, data in events:
                try:
                    self._apply(batch, event, data, now)
                except PipelineError as exc:
                    results[i] = exc
                except (ArithmeticError, ValueError) as exc:  # out-of-range data in an event
                    results[i] = PermanentError(
                        f"{type(exc).__name__}: {exc}", reason="unprocessable_event"
                    )
            self._write(conn, batch, now)
            for i, letter in replays:
                try:
                    self._replay(conn, letter, now)
                except PipelineError as exc:
                    results[i] = exc
        if self.on_commit is not None:
            self.on_commit()
        return results

    def _apply(self, batch: _Batch, event: CloudEvent, data: EventData, now: datetime) -> None:
        """One event: notes updated and notifications decided; raises before changing
        anything of the batch."""
        before = batch.notes.get(event.subject)
        notifications = decide_event(event, before, self.oncall)
        after = record_pages(note_event(before, data), notifications)
        rows, notices = [], []
        for n in notifications:
            if n.channel == "team_digest" and self.digests is not None:
                notices.append(
                    DigestEntry(notification=n, notes=after, correlation_id=event.correlationid)
                )
            else:
                # NOTE: reminders (the `warning` rule) are skipped once acknowledged.
                reminder = reason_word(n.reason) == "warning"
                rows.append(SendQueue.values(n, event.correlationid, reminder, now))
        if after != before:
            batch.notes[event.subject] = after
            batch.changed.add(event.subject)
        batch.sends.extend(rows)
        batch.notices.extend(notices)

    def _write(self, conn: Connection, batch: _Batch, now: datetime) -> None:
        changed = [batch.notes[t] for t in sorted(batch.changed)]
        self.ledger.save_notes_in(conn, changed)
        self.sends.add_many(conn, batch.sends)
        if self.digests is not None:
            self.digests.add_in(conn, batch.notices, now)

    def _replay(self, conn: Connection, letter: dict[str, Any], now: datetime) -> None:
        n: Notification = letter["notification"]
        row = self.sends.get(conn, n.notification_key)
        if row is None:  # a store of its own (another deployment): queue it afresh
            values = SendQueue.values(
                n, letter["correlation_id"], letter["unless_acknowledged"], now
            )
            self.sends.add_many(conn, [values])
            log.info("notification.replayed", key=n.notification_key, outcome="queued")
            return
        if row.status != "dead":
            log.info("notification.replayed", key=row.key, outcome=f"already {row.status}")
            return
        notes = self.ledger.notes_in(conn, [n.ticket_id]).get(n.ticket_id)
        why = self.outcomes.no_longer_needed(row, notes)
        if why is not None:
            self.outcomes.cancel_in(conn, row, f"replayed, but {why}", now)
            return
        self.sends.requeue(conn, row.key, now)
        log.info("notification.replayed", key=row.key, outcome="queued")


def _replayed(inbound: Inbound) -> dict[str, Any]:
    try:
        raw = json.loads(inbound.body)
        return {
            "notification": Notification.model_validate(raw["notification"]),
            "correlation_id": str(raw.get("correlation_id") or ""),
            "unless_acknowledged": bool(raw.get("unless_acknowledged")),
        }
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        raise PermanentError(f"not a notification: {exc}", reason="schema_violation") from exc

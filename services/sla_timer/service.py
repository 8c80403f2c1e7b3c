"""sla_timer's edge: ticket events in, clocks in the store, sla events out via the outbox.

`handle` runs on the consume loop: it applies one event to its clock and records the
resulting events in the same transaction, then returns nothing for the runtime to
publish (the input is acked once the transaction committed). `fire` and `relay` run
on the scheduler thread: due clocks fire into the outbox, and the outbox is published
with confirms and marked sent.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.engine import Connection

from schemas.events import (
    CloudEvent,
    EventData,
    SlaBreached,
    SlaWarning,
    TicketExempted,
    TicketOpened,
    TicketReclassified,
    TicketResolved,
    TicketResponded,
    make_event,
)
from services.runtime.events import now_utc, parse_event
from services.runtime.messages import Inbound, Outgoing
from services.runtime.outbox import OutboxRow
from services.sla_timer.clock import Clock, Outcome, fire_due, open_clock, reclassify, respond, stop
from services.sla_timer.metrics import SlaMetrics
from services.sla_timer.policy import Policy
from services.sla_timer.store import ClockStore

SERVICE = "sla_timer"
UPDATES = (TicketResponded, TicketReclassified, TicketExempted, TicketResolved)


class SlaTimer:
    def __init__(
        self,
        store: ClockStore,
        policy: Policy,
        clock: Callable[[], datetime] = now_utc,
        metrics: SlaMetrics | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.now = clock
        self.metrics = metrics or SlaMetrics()

    # -- consume loop ---------------------------------------------------------------
    def handle(self, inbound: Inbound) -> list[Outgoing]:
        event, data = parse_event(inbound)
        now = self.now()
        with self.store.transaction() as conn:
            if self.store.seen(conn, event.id):
                return []
            self._apply(conn, event, data, now)
            self.store.mark_seen(conn, event.id, now)
        return []

    def _apply(self, conn: Connection, event: CloudEvent, data: EventData, now: datetime) -> None:
        stored = self.store.load(conn, event.subject, lock=True)
        if isinstance(data, TicketOpened):
            if stored is not None:
                return  # a second opened for the ticket: the first one set the clock
            opened = open_clock(data.ticket, self.policy, event.correlationid)
            if opened is None:
                return
            clock = self._commit(conn, opened, now)
            for body in self.store.take_early(conn, event.subject):
                early = CloudEvent.model_validate_json(body)
                clock = self._commit(conn, self._update(clock, early.parsed()), now)
            return
        if not isinstance(data, UPDATES):
            return  # ticket.updated and the like do not touch the clock
        if stored is None:
            # NOTE: events can overtake each other (redelivery, replicas): keep the
            # update and apply it when its ticket.opened arrives.
            self.store.park_early(conn, event.id, event.subject, event.model_dump_json())
            return
        self._commit(conn, self._update(Clock.model_validate(stored), data), now)

    def _update(self, clock: Clock, data: EventData) -> Outcome:
        match data:
            case TicketResponded():
                return respond(clock, data.at)
            case TicketReclassified():
                return reclassify(clock, data.severity, self.policy, data.at)
            case TicketExempted():
                return stop(clock, "exempted", data.at)
            case TicketResolved():
                return stop(clock, "resolved", data.at)
        return clock, []

    def _commit(self, conn: Connection, outcome: Outcome, now: datetime) -> Clock:
        clock, events = outcome
        self.store.save(
            conn,
            clock.ticket_id,
            clock.model_dump(mode="json"),
            state=clock.state,
            next_fire_at=clock.next_fire(),
            policy_version=clock.policy_version,
            now=now,
        )
        for data, cause in events:
            cloud = self._event(clock, data, cause, now)
            self.store.add_outbox(conn, cloud.id, cloud.routing_key, cloud.model_dump_json(), now)
        return clock

    # -- scheduler thread ------------------------------------------------------------------
    def fire(self, limit: int = 500) -> int:
        """Fire every clock due by now (up to `limit`) into the outbox; returns how many.
        One UPDATE and one INSERT for the whole batch: many clocks often fall due together."""
        now = self.now()
        fired: list[EventData] = []
        with self.store.transaction() as conn:
            due = self.store.claim_due(conn, now, limit)
            updates, outbox = [], []
            for stored in due:
                clock, events = fire_due(Clock.model_validate(stored), now)
                updates.append(self._row(clock, now))
                for data, cause in events:
                    cloud = self._event(clock, data, cause, now)
                    outbox.append(
                        {
                            "event_id": cloud.id,
                            "routing_key": cloud.routing_key,
                            "body": cloud.model_dump_json(),
                            "created_at": now,
                        }
                    )
                    fired.append(data)
            self.store.update_many(conn, updates)
            self.store.add_outbox_many(conn, outbox)
        for data in fired:  # counted once committed
            if isinstance(data, SlaWarning):
                self.metrics.observe("warning", data.lateness_ms)
            elif isinstance(data, SlaBreached):
                self.metrics.observe("breach", data.lateness_ms)
        return len(due)

    @staticmethod
    def _row(clock: Clock, now: datetime) -> dict[str, object]:
        return {
            "ticket_id": clock.ticket_id,
            "state": clock.state,
            "next_fire_at": clock.next_fire(),
            "policy_version": clock.policy_version,
            "data": clock.model_dump(mode="json"),
            "updated_at": now,
        }

    @staticmethod
    def _event(clock: Clock, data: EventData, cause: str, now: datetime) -> CloudEvent:
        return make_event(
            data,
            service=SERVICE,
            subject=clock.ticket_id,
            cause=cause,
            correlation_id=clock.correlation_id,
            now=now,
        )

    def relay(self, publish: Callable[[list[OutboxRow]], None], limit: int = 500) -> int:
        """Publish unsent outbox rows (`publish` returns once all are confirmed, or
        raises) and mark them sent in the same transaction."""
        with self.store.transaction() as conn:
            rows = self.store.claim_outbox(conn, limit)
            if rows:
                publish(rows)
                self.store.mark_sent(conn, [row.id for row in rows], self.now())
        return len(rows)

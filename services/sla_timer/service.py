"""sla_timer's edge: ticket events in, clocks in the store, sla events out via the outbox.

`handle_batch` runs on the consume loop with a turn's worth of deliveries: it loads their
tickets' clocks (one per metric) in one query, applies each event to them (pure, in
order, `ticket_clocks.apply`), and writes the clocks, the events they cause (the outbox)
and the processed ids in ONE transaction; the runtime acks the whole batch once it
committed (group commit). An event that cannot touch a clock costs no write at all.
`fire` runs on the scheduler thread (due clocks into the outbox); the outbox relay
publishes with confirms.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from schemas.events import (
    METRICS,
    CloudEvent,
    EventData,
    SlaBreached,
    SlaWarning,
    TicketOpened,
    TicketUpdated,
    make_event,
)
from services.runtime.consumer import Result
from services.runtime.errors import PermanentError, PipelineError
from services.runtime.events import now_utc, parse_event
from services.runtime.messages import Inbound, Outgoing
from services.sla_timer.calendar import BusinessCalendar
from services.sla_timer.clock import Clock, Outcome, clock_key, fire_due
from services.sla_timer.metrics import SlaMetrics
from services.sla_timer.policy import Policy
from services.sla_timer.store import ClockStore
from services.sla_timer.ticket_clocks import UPDATES, Emitted, TicketClocks, apply, open_ticket

SERVICE = "sla_timer"


@dataclass
class _Batch:
    """What one batch changes, written in one transaction at its end."""

    clocks: dict[str, TicketClocks]  # by ticket
    early: dict[str, list[str]]
    new: set[str] = field(default_factory=set)  # clock keys
    changed: dict[str, Clock] = field(default_factory=dict)  # by clock key
    outbox: list[dict[str, Any]] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    parked: list[dict[str, str]] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)


class SlaTimer:
    def __init__(
        self,
        store: ClockStore,
        policy: Policy,
        clock: Callable[[], datetime] = now_utc,
        metrics: SlaMetrics | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.now = clock
        self.metrics = metrics or SlaMetrics()
        self.on_commit = on_commit  # e.g. wake the outbox relay

    # -- consume loop ---------------------------------------------------------------
    def handle(self, inbound: Inbound) -> list[Outgoing]:
        """One delivery (tests, tools): `handle_batch` of one, raising its failure."""
        (result,) = self.handle_batch([inbound])
        if isinstance(result, BaseException):
            raise result
        return list(result)

    def handle_batch(self, inbounds: Sequence[Inbound]) -> list[Result]:
        results: list[Result] = [[] for _ in inbounds]
        todo: list[tuple[int, CloudEvent, EventData]] = []
        for i, inbound in enumerate(inbounds):
            try:
                event, data = parse_event(inbound)
            except PermanentError as exc:
                results[i] = exc
                continue
            if isinstance(data, TicketOpened | UPDATES):
                todo.append((i, event, data))
            # else: ticket.updated and the like never touch a clock: no write at all
        if not todo:
            return results
        now = self.now()
        with self.store.transaction() as conn:
            seen = self.store.seen_many(conn, [event.id for _, event, _ in todo])
            tickets = {event.subject for _, event, _ in todo}
            keys = [clock_key(t, m) for t in tickets for m in METRICS]
            clocks: dict[str, TicketClocks] = {}
            for stored in self.store.load_many(conn, keys, lock=True).values():
                clock = Clock.model_validate(stored)
                clocks.setdefault(clock.ticket_id, {})[clock.metric] = clock
            opening = {e.subject for _, e, d in todo if isinstance(d, TicketOpened)} - set(clocks)
            follow_ups = {e.subject for _, e, d in todo if isinstance(d, TicketUpdated)}
            batch = _Batch(clocks, self.store.early_for(conn, opening | (follow_ups - set(clocks))))
            for i, event, data in todo:
                if event.id in seen:
                    continue
                seen.add(event.id)
                try:
                    self._apply(batch, event, data, now)
                except PipelineError as exc:
                    results[i] = exc
                except (ArithmeticError, ValueError) as exc:  # out-of-range deadline math
                    results[i] = PermanentError(
                        f"{type(exc).__name__}: {exc}", reason="unprocessable_event"
                    )
            self._write(conn, batch, now)
        if self.on_commit is not None:
            self.on_commit()
        return results

    def _apply(self, batch: _Batch, event: CloudEvent, data: EventData, now: datetime) -> None:
        """One event against the batch's clocks; raises before changing anything."""
        ticket_id = event.subject
        current = batch.clocks.get(ticket_id)
        clocks: TicketClocks | None = None
        emitted: Emitted = []
        if isinstance(data, TicketOpened):
            if current is None:  # a second opened for the ticket: the first one set the clocks
                clocks, emitted = open_ticket(data.ticket, self.policy, event.correlationid)
                for early in _by_time(batch.early.get(ticket_id, []) if clocks else []):
                    clocks, more = self._update(clocks, early)
                    emitted += more
        elif current is None:
            # NOTE: events can overtake each other (redelivery, replicas): keep the update
            # and apply it when its ticket.opened arrives. A customer follow-up only
            # matters after something else (an agent reply, a wait): kept only then, so
            # the follow-ups of tickets without clocks are not all written down.
            if not isinstance(data, TicketUpdated) or batch.early.get(ticket_id):
                body = event.model_dump_json()
                batch.parked.append({"event_id": event.id, "ticket_id": ticket_id, "body": body})
                batch.early.setdefault(ticket_id, []).append(body)
        else:
            clocks, emitted = self._update(current, data)
        batch.seen.append(event.id)
        if not clocks:
            return
        if current is None:
            batch.opened.append(ticket_id)
        for metric, clock in clocks.items():
            if current is None or metric not in current:
                batch.new.add(clock.key)
            if current is None or current.get(metric) != clock:
                batch.changed[clock.key] = clock
        batch.clocks[ticket_id] = clocks
        batch.outbox.extend(self._outbox_row(c, d, cause, now) for c, d, cause in emitted)

    def _write(self, conn: Connection, batch: _Batch, now: datetime) -> None:
        rows = [self._row(batch.changed[key], now) for key in sorted(batch.changed)]
        self.store.insert_many(conn, [r for r in rows if r["ticket_id"] in batch.new])
        self.store.update_many(conn, [r for r in rows if r["ticket_id"] not in batch.new])
        self.store.add_outbox_many(conn, batch.outbox)
        self.store.mark_seen_many(conn, batch.seen, now)
        self.store.park_early_many(conn, batch.parked, now)
        # Only tickets that had updates parked (before, or earlier in this batch).
        self.store.drop_early(conn, [t for t in batch.opened if t in batch.early])

    def commit(self, conn: Connection, outcome: Outcome, now: datetime) -> Clock:
        """Save one clock's outcome (new or not) and queue its events (operator tools)."""
        clock, events = outcome
        row = self._row(clock, now)
        self.store.save(
            conn,
            clock.key,
            row["data"],
            state=clock.state,
            next_fire_at=row["next_fire_at"],
            policy_version=clock.policy_version,
            now=now,
        )
        self.store.add_outbox_many(conn, [self._outbox_row(clock, d, c, now) for d, c in events])
        return clock

    def _update(self, clocks: TicketClocks, data: EventData) -> tuple[TicketClocks, Emitted]:
        return apply(clocks, data, self.policy, self._calendar)

    def _calendar(self, clock: Clock) -> BusinessCalendar:
        try:
            return self.policy.calendars[clock.calendar]
        except KeyError:  # the policy was changed under a clock: dead-letter with a reason
            raise ValueError(
                f"calendar {clock.calendar!r} of {clock.key} is not in policy {self.policy.version}"
            ) from None

    def _outbox_row(
        self, clock: Clock, data: EventData, cause: str, now: datetime
    ) -> dict[str, Any]:
        cloud = self._event(clock, data, cause, now)
        return {
            "event_id": cloud.id,
            "routing_key": cloud.routing_key,
            "body": cloud.model_dump_json(),
            "created_at": now,
        }

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
                    outbox.append(self._outbox_row(clock, data, cause, now))
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
    def _row(clock: Clock, now: datetime) -> dict[str, Any]:
        return {
            "ticket_id": clock.key,  # the store's key column (see clock_key)
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


def _by_time(bodies: list[str]) -> list[EventData]:
    """Parked updates in the order they happened (their `at`), not the order they came."""
    updates = [CloudEvent.model_validate_json(body).parsed() for body in bodies]
    return sorted(updates, key=lambda data: getattr(data, "at"))  # noqa: B009 - every update has one

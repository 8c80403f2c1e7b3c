"""`sla whatif`'s pure core: recorded events replayed under one policy and roster.

The recorded `ticket.*` events and acknowledgements are fed in the order the services
saw them (the envelope's time), with a simulated clock: between two events every
warning and breach due fires at its own instant, as a punctual scheduler would. What
sla_timer would emit goes to the notifier's decision, with the notes it keeps per ticket
held in memory. The recorded `sla.*` and `escalation.*` events are not used: both the
current and the proposed files are replayed the same way, so they compare like for like.
Nothing here publishes or stores anything.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import date, datetime

from schemas.events import (
    CloudEvent,
    EventData,
    SlaBreached,
    SlaWarning,
    TicketOpened,
    TicketUpdated,
)
from services.operator import whatif_replay as replay

OPEN_STATES = ("running", "breached")


@dataclass(frozen=True)
class TicketOutcome:
    ticket_id: str
    metric: str
    rule: str
    due_at: datetime
    outcome: str  # met, responded_late, breached, exempted, resolved, running
    warned: bool


@dataclass(frozen=True)
class PageSent:
    person: str
    day: date  # UTC
    ticket_id: str
    reason: str
    level: int


@dataclass
class Run:
    """What one replay produced."""

    outcomes: dict[tuple[str, str], TicketOutcome] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)
    breaches: dict[str, int] = field(default_factory=dict)
    pages: list[PageSent] = field(default_factory=list)
    page_metrics: dict[str, int] = field(default_factory=dict)
    # (instant, open clocks, breaches so far) after every change
    timeline: list[tuple[datetime, int, int]] = field(default_factory=list)
    without_clock: int = 0
    before_window: int = 0  # updates of tickets opened before the first event read
    unreadable: int = 0  # envelopes whose data does not match its type's model


def _outcome(clock: replay.Clock) -> str:
    if clock.breached_at is not None and clock.state in ("breached", "resolved", "exempted"):
        return "breached"
    return str(clock.state)


class _Replay:
    def __init__(self, policy: replay.Policy, oncall: replay.OnCall) -> None:
        self.policy, self.oncall = policy, oncall
        self.clocks: dict[str, dict[str, replay.Clock]] = {}  # ticket -> metric -> clock
        self.notes: dict[str, replay.TicketNotes] = {}
        self.parked: dict[str, list[EventData]] = {}
        self.opened: set[str] = set()
        self.due: list[tuple[datetime, int, str, str]] = []  # (instant, tie-break, ticket, metric)
        self.sent: set[str] = set()  # the notifier's ledger: one send per notification key
        self.seq = 0
        self.open_count = self.breach_count = 0
        self.run = Run()

    def feed(self, event: CloudEvent, data: EventData) -> None:
        self.fire_until(event.time)
        if isinstance(data, TicketOpened):
            self._open(event.subject, data, event)
        elif event.subject in self.clocks:
            clocks = list(self.clocks[event.subject].values())
            clocks, fired = replay.apply_update(clocks, data, self.policy)
            self._set_all(clocks, event.time)
            self._notify(data, event.time)
            self._emit(fired, event.time)
        elif event.subject in self.opened:  # a ticket without a clock
            self._notify(data, event.time)
        else:  # NOTE: as sla_timer does, an update before its ticket.opened waits for it
            if not isinstance(data, TicketUpdated) or event.subject in self.parked:
                self.parked.setdefault(event.subject, []).append(data)  # as sla_timer keeps

    def _open(self, ticket_id: str, data: TicketOpened, event: CloudEvent) -> None:
        if ticket_id in self.opened:
            return  # a second opened: the first set the clock
        self.opened.add(ticket_id)
        self._notify(data, event.time)
        started = replay.open_for(data, self.policy, event.correlationid)
        if started is None:
            self.run.without_clock += 1
            return
        clocks, fired = started
        self._set_all(clocks, event.time)
        self._emit(fired, event.time)
        parked = self.parked.pop(ticket_id, [])
        for early in sorted(parked, key=lambda d: getattr(d, "at")):  # noqa: B009 - updates have one
            clocks = list(self.clocks[ticket_id].values())
            clocks, fired = replay.apply_update(clocks, early, self.policy)
            self._set_all(clocks, event.time)
            self._notify(early, event.time)
            self._emit(fired, event.time)

    def fire_until(self, now: datetime) -> None:
        while self.due and self.due[0][0] <= now:
            at, _, ticket_id, metric = heapq.heappop(self.due)
            clock = self.clocks[ticket_id][metric]
            if replay.next_fire(clock) != at:
                continue  # moved since (reclassified, stopped): a stale entry
            clock, fired = replay.fire(clock, at)
            self._set(clock, at)
            self._emit(fired, at)

    def _set_all(self, clocks: list[replay.Clock], at: datetime) -> None:
        for clock in clocks:
            self._set(clock, at)

    def _set(self, clock: replay.Clock, at: datetime) -> None:
        metric = replay.clock_metric(clock)
        before = self.clocks.get(clock.ticket_id, {}).get(metric)
        self.clocks.setdefault(clock.ticket_id, {})[metric] = clock
        was_open = before is not None and before.state in OPEN_STATES
        self.open_count += (clock.state in OPEN_STATES) - was_open
        when = replay.next_fire(clock)
        if when is not None and (before is None or replay.next_fire(before) != when):
            self.seq += 1
            heapq.heappush(self.due, (when, self.seq, clock.ticket_id, metric))
        if clock.round == 0:
            return  # no round has run (idle, or closed while idle): nothing to count yet
        key = (clock.ticket_id, metric)
        self.run.outcomes[key] = TicketOutcome(
            clock.ticket_id, key[1], clock.rule, clock.due_at, _outcome(clock), clock.warned
        )

    def _emit(self, fired: list[EventData], at: datetime) -> None:
        for data in fired:
            metric = replay.clock_metric(data)
            if isinstance(data, SlaWarning):
                self.run.warnings[metric] = self.run.warnings.get(metric, 0) + 1
            elif isinstance(data, SlaBreached):
                self.run.breaches[metric] = self.run.breaches.get(metric, 0) + 1
                self.breach_count += 1
            self._notify(data, at)
        if fired or self.run.timeline == [] or self.run.timeline[-1][1] != self.open_count:
            self.run.timeline.append((at, self.open_count, self.breach_count))

    def _notify(self, data: EventData, at: datetime) -> None:
        if not replay.notifier_reads(data):
            return
        ticket_id = self._ticket_of(data)
        notes, sent = replay.notify(data, self.notes.get(ticket_id), self.oncall, at)
        self.notes[ticket_id] = notes
        # an sla.* event names its clock; the rest (opened, acknowledged) first_response's
        metric = replay.clock_metric(data)
        for n in sent:
            if n.notification_key in self.sent:
                continue
            self.sent.add(n.notification_key)
            if n.kind == "page" and n.person != replay.TEAM and n.action in ("trigger", "notify"):
                self.run.pages.append(PageSent(n.person, at.date(), ticket_id, n.reason, n.level))
                self.run.page_metrics[metric] = self.run.page_metrics.get(metric, 0) + 1

    @staticmethod
    def _ticket_of(data: EventData) -> str:
        if isinstance(data, TicketOpened):
            return data.ticket.ticket_id
        return str(getattr(data, "ticket_id"))  # noqa: B009 - every other input has one


def simulate(
    events: list[CloudEvent],
    policy: replay.Policy,
    oncall: replay.OnCall,
    until: datetime | None = None,
) -> Run:
    """Replay the input events among `events` (any order, repeats dropped by id) under
    `policy` and `oncall`, firing what falls due up to `until` (default: the last
    event's time, the horizon of the recording)."""
    seen: set[str] = set()
    sim = _Replay(policy, oncall)
    for event in sorted(events, key=lambda e: e.time):  # stable: equal times keep their order
        if event.id in seen:
            continue
        seen.add(event.id)
        try:
            data = event.parsed()
        except ValueError:  # pydantic's ValidationError: recorded by another version?
            sim.run.unreadable += 1
            continue
        if replay.is_input(data):
            sim.feed(event, data)
    horizon = until or max((e.time for e in events), default=None)
    if horizon is not None:
        sim.fire_until(horizon)
    sim.run.before_window = sum(len(v) for v in sim.parked.values())
    return sim.run

"""Every SLA clock of one ticket, one per metric, and what each ticket event does to them.

Pure: `now` never read here; each event's own instant is used. The metrics:

- `first_response`: from the create time to the first agent reply (`clock.respond`).
- `resolution`: from the create time to `ticket.resolved` (met, or late after the due).
- `next_reply`: idle until an agent has replied; then each customer follow-up
  (`ticket.updated`) starts a round, stopped by the next agent reply. Follow-ups while a
  round runs do not restart it (the oldest unanswered message counts, as in Zendesk).
- `periodic_update`: from each agent reply (the first one included) to the next; a round
  that runs out is breached, the next reply is late and starts the next round.

Resolution and exemption end every clock: no round starts after (chatwoot#10178 kept a
next-reply clock running on resolved conversations). Waiting on the customer pauses the
running clocks whose rule says so; resuming, or a customer reply where the rule says so,
moves their deadlines by the business time the wait overlapped (`clock.pause/resume`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

from schemas.events import (
    METRICS,
    EventData,
    Metric,
    TicketExempted,
    TicketPaused,
    TicketReclassified,
    TicketResolved,
    TicketResponded,
    TicketResumed,
    TicketUpdated,
)
from schemas.inbound import Severity
from schemas.ticket import Ticket
from services.sla_timer.calendar import BusinessCalendar
from services.sla_timer.clock import (
    ENDED,
    Clock,
    _from_deadlines,
    _scheduled,
    pause,
    reclassify,
    respond,
    resume,
    stop,
)
from services.sla_timer.policy import Policy, compute_deadlines

TicketClocks = dict[Metric, Clock]
Emitted = list[tuple[Clock, EventData, str]]  # the clock as after the event, data, cause
ROUNDS: tuple[Metric, ...] = ("next_reply", "periodic_update")  # idle between rounds
UPDATES = (
    TicketResponded
    | TicketUpdated
    | TicketReclassified
    | TicketExempted
    | TicketResolved
    | TicketPaused
    | TicketResumed
)


def _facts(clock: Clock, severity: Severity | None = None) -> dict[str, object]:
    return {
        "channel": clock.channel,
        "role": clock.role,
        "severity": severity or clock.severity,
        "call_kind": clock.call_kind,
        "premium": clock.premium,
    }


def _start(
    policy: Policy,
    metric: Metric,
    base: Clock,
    at: datetime,
    *,
    round_: int,
    severity: Severity | None = None,
) -> tuple[Clock, list[tuple[EventData, str]]] | None:
    """A running clock of `metric` from `at`, with the ticket facts of `base`."""
    facts = _facts(base, severity)
    d = compute_deadlines(policy, started_at=at, metric=metric, **facts)  # type: ignore[arg-type]
    if d is None:
        return None
    carried = {"round": round_, "opened_at": base.opened_at, "replied": base.replied}
    clock = _from_deadlines(base.ticket_id, base.correlation_id, facts, d, carried)
    why = "opened" if metric in ("first_response", "resolution") else "started"
    return clock, [_scheduled(clock, why)]


def _idle(policy: Policy, metric: Metric, base: Clock, severity: Severity) -> Clock | None:
    """A next_reply or periodic_update clock with no round running, if a rule gives one."""
    opened = base.opened_at or base.started_at
    started = _start(policy, metric, base, opened, round_=1, severity=severity)
    if started is None:
        return None
    clock, _ = started
    return clock.model_copy(update={"state": "idle", "round": 0, "severity": severity})


def open_ticket(
    ticket: Ticket, policy: Policy, correlation_id: str
) -> tuple[TicketClocks, Emitted]:
    """The clocks a new ticket gets: first_response and resolution run from its create
    time, next_reply and periodic_update wait idle for an agent's reply."""
    facts = {
        "ticket_id": ticket.ticket_id,
        "correlation_id": correlation_id,
        "channel": ticket.channel,
        "role": ticket.submitter.role,
        "severity": ticket.severity,
        "call_kind": ticket.call_kind,
        "premium": ticket.premium,
        "rule": "",
        "guaranteed": False,
        "calendar": "",
        "policy_version": policy.version,
        "started_at": ticket.created_at,
        "due_at": ticket.created_at,
        "warn_at": None,
        "opened_at": ticket.created_at.astimezone(UTC),
    }
    return _create_missing({}, policy, Clock.model_validate(facts), ticket.severity, None)


def _create_missing(
    clocks: TicketClocks,
    policy: Policy,
    base: Clock,
    severity: Severity,
    at: datetime | None,
) -> tuple[TicketClocks, Emitted]:
    """Clocks for the metrics that have none yet but a rule now: at opening, or at `at`,
    a reclassification to a severity with more metrics. A first response already given
    gets no clock; resolution counts from the create time; periodic updates, once an
    agent has replied, from the reclassification (an incident escalated mid-way)."""
    out: TicketClocks = dict(clocks)
    emitted: Emitted = []
    opened = base.opened_at or base.started_at
    replied = _has_replied(clocks) or base.replied
    base = base.model_copy(update={"replied": replied})
    for metric in METRICS:
        prior = out.get(metric)
        if (prior is not None and not _not_applicable(prior)) or (
            metric == "first_response" and replied
        ):
            continue
        # A metric that a reclassification took away and this one gives back counts on
        # in a new round (its events then have ids of their own).
        next_round = prior.round + 1 if prior is not None and metric in ROUNDS else 1
        started = None
        if metric == "periodic_update" and replied and at is not None:
            started = _start(policy, metric, base, at, round_=next_round, severity=severity)
        elif metric in ROUNDS:
            idle = _idle(policy, metric, base, severity)
            if idle is not None:
                out[metric] = idle.model_copy(update={"round": next_round - 1})
            continue
        else:
            started = _start(policy, metric, base, opened, round_=1, severity=severity)
        if started is not None:
            out[metric], events = started
            emitted += [(out[metric], d, c) for d, c in events]
    return out, emitted


def _not_applicable(clock: Clock) -> bool:
    """Stopped by a reclassification to a severity without a rule for its metric (not by
    the ticket's own exemption): another reclassification may give it back."""
    return clock.state == "exempted" and not clock.ticket_closed


def _has_replied(clocks: TicketClocks) -> bool:
    # A first-response clock stored before `replied` existed says so by its state.
    return any(
        c.replied or (c.metric == "first_response" and c.state in ("met", "responded_late"))
        for c in clocks.values()
    )


def _closed(clocks: TicketClocks) -> bool:
    # `resolved`: a first-response clock stored before `ticket_closed` existed.
    return any(c.ticket_closed or c.state == "resolved" for c in clocks.values())


def apply(
    clocks: TicketClocks,
    data: EventData,
    policy: Policy,
    calendar: Callable[[Clock], BusinessCalendar],
) -> tuple[TicketClocks, Emitted]:
    """`data` applied to every clock of the ticket; raises before changing anything."""
    out: TicketClocks = {}
    emitted: Emitted = []
    for metric, clock in clocks.items():
        new, events = _one(clock, data, policy, calendar)
        out[metric] = new
        emitted += [(new, d, c) for d, c in events]
    if isinstance(data, TicketResolved | TicketExempted):  # every clock: no round again
        out = {m: c.model_copy(update={"ticket_closed": True}) for m, c in out.items()}
    if isinstance(data, TicketReclassified) and out and not _closed(clocks):
        base = next(iter(out.values()))
        out, more = _create_missing(out, policy, base, data.severity, data.at)
        emitted += more
    if isinstance(data, TicketResponded | TicketReclassified) and _waiting(clocks):
        out = _still_waiting(clocks, out, data.at)
    return out, emitted


def _waiting(clocks: TicketClocks) -> bool:
    return any(c.paused for c in clocks.values())


def _still_waiting(before: TicketClocks, after: TicketClocks, at: datetime) -> TicketClocks:
    """A round or clock started while the helpdesk waits on the customer (an agent's
    nudge, a reclassification) starts paused, where its rule pauses: the wait goes on
    until resumed or the customer replies."""
    out = dict(after)
    for metric, clock in after.items():
        old = before.get(metric)
        new_round = old is None or (old.round, old.started_at) != (clock.round, clock.started_at)
        if new_round and clock.state == "running" and clock.pause_on_wait and not clock.paused:
            out[metric], _ = pause(clock, at)
    return out


def _one(
    clock: Clock,
    data: EventData,
    policy: Policy,
    calendar: Callable[[Clock], BusinessCalendar],
) -> tuple[Clock, list[tuple[EventData, str]]]:
    match data:
        case TicketResponded(at=at):
            return _replied(clock.model_copy(update={"replied": True}), at, policy)
        case TicketUpdated(at=at):
            return _customer_replied(clock, at, policy, calendar)
        case TicketReclassified(severity=severity, at=at):
            return _reclassified(clock, severity, policy, at)
        case TicketResolved(at=at) if clock.metric == "resolution":
            return respond(clock, at)
        case TicketResolved(at=at):
            return _end(clock, "resolved", at)
        case TicketExempted(at=at):
            return _end(clock, "exempted", at)
        case TicketPaused(at=at) if clock.pause_on_wait:
            return pause(clock, at)
        case TicketResumed(at=at):
            return resume(clock, calendar(clock), at)
    return clock, []


def _end(
    clock: Clock, state: Literal["resolved", "exempted"], at: datetime
) -> tuple[Clock, list[tuple[EventData, str]]]:
    """The ticket closed: a running round stops; a round already met or late keeps its
    outcome (what-if and reports count it), and none starts again."""
    if clock.state == "idle":
        return clock.model_copy(update={"state": state, "stopped_at": at}), []
    return stop(clock, state, at)


def _replied(
    clock: Clock, at: datetime, policy: Policy
) -> tuple[Clock, list[tuple[EventData, str]]]:
    if clock.metric in ("first_response", "next_reply"):
        return respond(clock, at)
    if clock.metric != "periodic_update" or clock.state in ENDED or clock.ticket_closed:
        return clock, []
    events: list[tuple[EventData, str]] = []
    if clock.state in ("running", "breached"):
        clock, events = respond(clock, at)
    started = _start(policy, "periodic_update", clock, at, round_=clock.round + 1)
    if started is None:  # the rule is gone from the policy: no further rounds
        return clock, events
    return started[0], events + started[1]


def _customer_replied(
    clock: Clock,
    at: datetime,
    policy: Policy,
    calendar: Callable[[Clock], BusinessCalendar],
) -> tuple[Clock, list[tuple[EventData, str]]]:
    events: list[tuple[EventData, str]] = []
    if clock.paused and clock.resume_on_reply:
        clock, events = resume(clock, calendar(clock), at)
    if clock.metric != "next_reply" or not clock.replied or clock.ticket_closed:
        return clock, events
    if clock.state not in ("idle", "met", "responded_late"):
        return clock, events  # a round runs already, or the ticket is closed
    started = _start(policy, "next_reply", clock, at, round_=clock.round + 1)
    if started is None:
        return clock, events
    return started[0], events + started[1]


def _reclassified(
    clock: Clock, severity: Severity, policy: Policy, at: datetime
) -> tuple[Clock, list[tuple[EventData, str]]]:
    if clock.state in ("running", "breached"):
        return reclassify(clock, severity, policy, at)
    if clock.state in ENDED or clock.ticket_closed or clock.metric not in ROUNDS:
        return clock, []
    # Between rounds: the next round is counted under the new severity's rule, if any.
    if _idle(policy, clock.metric, clock, severity) is None:
        return clock.model_copy(update={"state": "exempted", "stopped_at": at}), []
    return clock.model_copy(update={"severity": severity}), []

"""One ticket's SLA clock and what happens to it: pure functions, `now` passed in.

A clock is created by ticket.opened (if a policy rule matches), fires a warning and
then a breach at their instants, and stops on the first agent response (met, or
responded late after a breach), on exemption (no breach) or on resolution. While the
helpdesk waits on the customer the clock is paused (nothing fires); its deadlines are
always recomputed from the unpaused ones and every pause (`services.sla_timer.pauses`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from schemas.events import EventData, Metric, SlaBreached, SlaMet, SlaScheduled, SlaWarning
from schemas.inbound import Severity
from schemas.ticket import CallKind, Channel, SubmitterRole, Ticket
from services.sla_timer.calendar import BusinessCalendar
from services.sla_timer.pauses import Pause, is_paused, paused_deadlines
from services.sla_timer.policy import Deadlines, Policy, compute_deadlines

# `idle`: a next_reply or periodic_update clock between rounds, nothing to count yet.
ClockState = Literal["idle", "running", "breached", "met", "responded_late", "exempted", "resolved"]
STOPPED = ("met", "responded_late", "exempted", "resolved")
ENDED = ("exempted", "resolved")  # no round starts again


def clock_key(ticket_id: str, metric: Metric) -> str:
    """The store's key: the ticket id for first_response (as stored before there were
    several metrics, so older stores need no migration), `<ticket>/<metric>` otherwise."""
    return ticket_id if metric == "first_response" else f"{ticket_id}/{metric}"


class Clock(BaseModel):
    model_config = ConfigDict(frozen=True)

    ticket_id: str
    metric: Metric = "first_response"
    round: int = 1  # next_reply and periodic_update count their rounds from 1
    correlation_id: str
    channel: Channel
    role: SubmitterRole
    severity: Severity
    call_kind: CallKind | None
    premium: bool
    rule: str
    guaranteed: bool
    calendar: str
    policy_version: str
    started_at: AwareDatetime
    due_at: AwareDatetime
    warn_at: AwareDatetime | None
    state: ClockState = "running"
    warned: bool = False
    breached_at: AwareDatetime | None = None
    stopped_at: AwareDatetime | None = None
    # Set on the first pause: due_at/warn_at as they were without any pause.
    pauses: tuple[Pause, ...] = ()
    unpaused_due_at: AwareDatetime | None = None
    unpaused_warn_at: AwareDatetime | None = None
    # From the rule: whether waiting on the customer pauses it, a customer reply resumes.
    pause_on_wait: bool = True
    resume_on_reply: bool = True
    opened_at: AwareDatetime | None = None  # the ticket's create time (None: = started_at)
    replied: bool = False  # an agent has replied on the ticket
    ticket_closed: bool = False  # resolved or exempted: no round starts again

    @property
    def key(self) -> str:
        return clock_key(self.ticket_id, self.metric)

    def cause(self, what: str) -> str:
        """An event id's cause: first_response's as before metrics, the others' prefixed
        with metric and round (each round's warning and breach are events of their own)."""
        if self.metric == "first_response":
            return what
        return f"{self.metric}:{self.round}:{what}"

    @property
    def paused(self) -> bool:
        return is_paused(self.pauses)

    @property
    def paused_since(self) -> datetime | None:
        """Start of the open pause: the budget stopped running then."""
        return next((p.started_at for p in self.pauses if p.ended_at is None), None)

    def next_fire(self) -> datetime | None:
        """The next instant something must fire, or None. While paused only what fell
        due before the pause began (say, a reclassification shortened the budget)."""
        if self.state != "running":
            return None
        if self.warn_at is not None and not self.warned and self.warn_at < self.due_at:
            fire = self.warn_at
        else:
            fire = self.due_at
        return fire if self.ran_out_by(fire) else None

    def ran_out_by(self, instant: datetime) -> bool:
        """Whether running time reached `instant`: a budget stops at a pause's start."""
        since = self.paused_since
        return since is None or instant < since

    def _resumed_pauses(self, at: datetime) -> tuple[Pause, ...]:
        return tuple(
            p if p.ended_at else Pause(p.started_at, max(at, p.started_at)) for p in self.pauses
        )

    def _base(self) -> dict[str, object]:
        return {
            "ticket_id": self.ticket_id,
            "metric": self.metric,
            "round": self.round,
            "severity": self.severity,
            "guaranteed": self.guaranteed,
            "policy_rule": self.rule,
            "policy_version": self.policy_version,
            "started_at": self.started_at,
            "due_at": self.due_at,
        }


Outcome = tuple[Clock, list[tuple[EventData, str]]]  # new clock, (event, id cause) pairs


def _from_deadlines(
    ticket_id: str,
    correlation_id: str,
    facts: Mapping[str, object],
    d: Deadlines,
    carried: Mapping[str, object] | None = None,
) -> Clock:
    """A running clock for `d`; `carried`: fields kept from the clock it replaces."""
    return Clock.model_validate(
        {
            "ticket_id": ticket_id,
            "correlation_id": correlation_id,
            **(carried or {}),
            **facts,
            "metric": d.metric,
            "pause_on_wait": d.pause,
            "resume_on_reply": d.resume_on_reply,
            "rule": d.rule,
            "guaranteed": d.guaranteed,
            "calendar": d.calendar,
            "policy_version": d.policy_version,
            "started_at": d.started_at,
            "due_at": d.due_at.astimezone(UTC),
            "warn_at": d.warn_at.astimezone(UTC) if d.warn_at else None,
        }
    )


def _scheduled(clock: Clock, why: str) -> tuple[EventData, str]:
    """`why` makes the id: the opening, or which reclassification moved the deadline (a
    ticket reclassified back and forth gets a new event each time)."""
    data = SlaScheduled(**clock._base(), warn_at=clock.warn_at, calendar=clock.calendar)
    return (
        data,
        clock.cause(
            f"scheduled:{why}:{clock.policy_version}:{clock.severity}:{clock.due_at.isoformat()}"
        ),
    )


def open_clock(ticket: Ticket, policy: Policy, correlation_id: str) -> Outcome | None:
    """A new clock for a ticket, or None when no rule gives it one."""
    facts: dict[str, object] = {
        "channel": ticket.channel,
        "role": ticket.submitter.role,
        "severity": ticket.severity,
        "call_kind": ticket.call_kind,
        "premium": ticket.premium,
    }
    deadlines = compute_deadlines(policy, started_at=ticket.created_at, **facts)  # type: ignore[arg-type]
    if deadlines is None:
        return None
    clock = _from_deadlines(ticket.ticket_id, correlation_id, facts, deadlines)
    return clock.model_copy(update={"opened_at": clock.started_at}), [_scheduled(clock, "opened")]


def fire_due(clock: Clock, now: datetime) -> Outcome:
    """Everything due by `now`: the warning before the breach when both are."""
    events: list[tuple[EventData, str]] = []
    if clock.state != "running":
        return clock, events

    def due(instant: datetime) -> bool:
        return instant <= now and clock.ran_out_by(instant)

    if clock.warn_at is not None and not clock.warned and due(clock.warn_at):
        if clock.warn_at < clock.due_at:
            warning = SlaWarning(
                **clock._base(),
                warn_at=clock.warn_at,
                fired_at=now,
                lateness_ms=_late_ms(clock.warn_at, now),
            )
            events.append((warning, clock.cause(f"warning:{clock.warn_at.isoformat()}")))
        clock = clock.model_copy(update={"warned": True})
    if due(clock.due_at):
        breach = SlaBreached(
            **clock._base(),
            fired_at=now,
            lateness_ms=_late_ms(clock.due_at, now),
        )
        events.append((breach, clock.cause(f"breach:{clock.due_at.isoformat()}")))
        clock = clock.model_copy(update={"state": "breached", "breached_at": now})
    return clock, events


def respond(clock: Clock, at: datetime) -> Outcome:
    """The first agent response stops the clock: met, or responded late after a breach.

    A response after the due instant that reaches us before the scheduler fired (at
    most SLA_TICK_S) ends as responded_late without a breach event: nobody should be
    paged for a ticket that has been answered."""
    if clock.state not in ("running", "breached"):
        return clock, []
    # While paused the budget stopped running at the pause: a reply then is late only
    # if the budget had already run out before the pause began.
    counted_until = min(at, clock.paused_since or at)
    late = clock.state == "breached" or counted_until > clock.due_at
    outcome: Literal["met", "responded_late"] = "responded_late" if late else "met"
    met = SlaMet(**clock._base(), responded_at=at, outcome=outcome)
    stopped = clock.model_copy(update={"state": outcome, "stopped_at": at})
    return stopped, [(met, clock.cause("met"))]


def reclassify(clock: Clock, severity: Severity, policy: Policy, at: datetime) -> Outcome:
    """Recompute from the original start under `policy` (the service passes the current
    one: a reclassification also moves the clock to the current policy version)."""
    if clock.state in STOPPED or severity == clock.severity:
        return clock, []
    facts = {
        "channel": clock.channel,
        "role": clock.role,
        "severity": severity,
        "call_kind": clock.call_kind,
        "premium": clock.premium,
    }
    deadlines = compute_deadlines(
        policy,
        started_at=clock.started_at,
        metric=clock.metric,
        **facts,  # type: ignore[arg-type]
    )
    if deadlines is None:  # the new severity has no clock: stop without a breach
        stopped = {"state": "exempted", "severity": severity, "stopped_at": at}
        return clock.model_copy(update=stopped), []
    # A warning or breach already sent is a fact: never sent twice for one clock.
    carried = {
        "round": clock.round,
        "opened_at": clock.opened_at,
        "replied": clock.replied,
        "warned": clock.warned,
        "state": clock.state,
        "breached_at": clock.breached_at,
    }
    moved = _from_deadlines(clock.ticket_id, clock.correlation_id, facts, deadlines, carried)
    if clock.pauses:  # GLPI forgets pauses on reclassification; the new budget keeps them
        cal = policy.calendars[moved.calendar]
        moved = apply_pauses(moved, cal, clock.pauses, moved.due_at, moved.warn_at, at)
    return moved, [_scheduled(moved, f"reclassified:{at.astimezone(UTC).isoformat()}")]


def stop(clock: Clock, state: Literal["exempted", "resolved"], at: datetime) -> Outcome:
    if clock.state in STOPPED:
        return clock, []
    return clock.model_copy(update={"state": state, "stopped_at": at}), []


def pause(clock: Clock, at: datetime) -> Outcome:
    """Waiting on the customer: nothing fires until resumed. A stopped or breached clock,
    or one already paused (a repeated request), is not affected. No event: the deadline
    is unknown until the clock resumes, which schedules it anew."""
    if clock.state != "running" or clock.paused or at >= clock.due_at:
        # Due already (the breach not fired yet): a pause must not hold the breach back.
        return clock, []
    update: dict[str, object] = {"pauses": (*clock.pauses, Pause(max(at, clock.started_at)))}
    if not clock.pauses:
        update |= {"unpaused_due_at": clock.due_at, "unpaused_warn_at": clock.warn_at}
    return clock.model_copy(update=update), []


def resume(clock: Clock, cal: BusinessCalendar, at: datetime) -> Outcome:
    """The pause ends at `at`: due and warning move by the business time it overlapped."""
    if clock.state != "running" or not clock.paused:
        return clock, []
    assert clock.unpaused_due_at is not None  # set by the first pause
    resumed = clock._resumed_pauses(at)
    moved = apply_pauses(clock, cal, resumed, clock.unpaused_due_at, clock.unpaused_warn_at, at)
    return moved, [_scheduled(moved, f"resumed:{at.astimezone(UTC).isoformat()}")]


def apply_pauses(
    clock: Clock,
    cal: BusinessCalendar,
    pauses: tuple[Pause, ...],
    due: datetime,
    warn: datetime | None,
    at: datetime,
) -> Clock:
    """`clock` with `pauses` over the unpaused `due`/`warn`. While paused, due_at says when
    it would be due if resumed at `at` (events and `sla explain` need an instant)."""
    as_if = clock.model_copy(update={"pauses": pauses})._resumed_pauses(at)
    new_due, new_warn = paused_deadlines(cal, clock.started_at, due, warn, as_if)
    assert new_due is not None  # no open pause in `as_if`
    return clock.model_copy(
        update={
            "pauses": pauses,
            "unpaused_due_at": due,
            "unpaused_warn_at": warn,
            "due_at": new_due,
            "warn_at": new_warn,
        }
    )


def _late_ms(due: datetime, now: datetime) -> int:
    return max(0, int((now - due).total_seconds() * 1000))

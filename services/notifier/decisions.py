"""Who must hear about a ticket, over which channel, for which reason (pure).

`decide` maps one event and what the notifier knows about the ticket to notifications,
following the on-call file's `notify` rules (defaults from the issue):

- `ticket.opened` of a Premium ticket, business-critical: rule `opened_business_critical`,
  by default page level 1 (reason `opened`); standard: `opened_standard`, nobody.
- `sla.warning` of a guaranteed clock: `warning_guaranteed`, remind level 1 unless the
  ticket was acknowledged (`warning`); of a target: `warning_target`, nobody.
- `sla.breached` of a guaranteed business-critical clock: `breached_business_critical`,
  page levels 1 and 2 (`breached`); of a guaranteed standard clock: `breached_standard`,
  notify level 1 and the team digest (`breached`).
- `sla.breached` of a target (not guaranteed): `missed_target`, the team digest only,
  never a page (`missed`).
- `escalation.acknowledged`: acknowledge each page that was triggered, on the same
  paging webhook (`acknowledged.<reason paged>`); `sla.met` and `ticket.resolved`:
  resolve each (`resolved.<reason paged>`).
- The clocks of the other metrics (next_reply, periodic_update, resolution) follow
  `notify.metrics.<metric>` (by default nobody is paged for them, see
  `MetricNotifyRules`); their reasons name the metric and, for next_reply and
  periodic_update, the round (`missed_next_reply_2`), so each round is told once. Their
  `sla.met` resolves only their own pages; a first response met does not stop them.

A level with nobody on call becomes a team digest notice at that level (when there is a
team channel; `coverage_gaps` finds such hours ahead).
A person on several levels is notified once, at the lowest. A closed ticket (met,
resolved, exempted) gets no new first-response triggers; a resolved or exempted one
none at all. Who is on call is resolved at `now`: pass the
event's own time (the CloudEvent `time`, as `decide_event` does) so a redelivered event
routes to the same people and the ledger (one send per `notification_key`) keeps it at
one page per person and reason.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import (
    TYPE_OF,
    CloudEvent,
    EscalationAcknowledged,
    EventData,
    SlaBreached,
    SlaMet,
    SlaWarning,
    TicketOpened,
    TicketResolved,
)
from schemas.inbound import TicketId
from services.notifier.notes import TicketNotes, note_event
from services.notifier.oncall import who_is_on_call
from services.notifier.oncall_model import OnCall, Person
from services.notifier.oncall_rules import TEAM, Kind, NotifyRule

__all__ = [
    "TEAM",
    "Action",
    "Notification",
    "NotifyChannel",
    "decide",
    "decide_event",
    "escalate",
]

NotifyChannel = Literal[
    "email", "chat_webhook", "paging_webhook", "generic_webhook", "console", "team_digest"
]
Action = Literal["trigger", "acknowledge", "resolve", "notify"]


class Notification(BaseModel):
    """One message to one recipient over one channel; `notification_key` is its ledger key.

    `person` is a person id or `team` (then `channel` is `team_digest`; `level` is the
    trigger's level, 0 for a plain team notice). Paging webhook notifications carry the
    PagerDuty `dedup_key` of the incident (`<ticket>:<reason that paged>`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ticket_id: TicketId
    reason: str = Field(pattern=r"^[a-z]+(_[a-z0-9_]+)?(\.[a-z]+(_[a-z0-9_]+)?)?$")
    level: int = Field(ge=0)
    person: str
    channel: NotifyChannel
    action: Action
    dedup_key: str | None = None
    # The person's next contact methods, tried in order while `channel` fails.
    fallbacks: tuple[NotifyChannel, ...] = ()
    kind: Literal["page", "remind", "notify"] = "notify"

    @property
    def methods(self) -> tuple[NotifyChannel, ...]:
        return (self.channel, *self.fallbacks)

    def via(self, channel: NotifyChannel) -> Notification:
        """This notification as sent over `channel` (a fallback): same key and incident."""
        if channel == self.channel or self.action not in ("trigger", "notify"):
            return self
        paging = channel == "paging_webhook"
        return self.model_copy(
            update={
                "channel": channel,
                "action": "trigger" if paging else "notify",
                "dedup_key": (self.dedup_key or f"{self.ticket_id}:{self.reason}")
                if paging
                else None,
            }
        )

    @property
    def notification_key(self) -> str:
        return f"{self.ticket_id}:{self.reason}:{self.level}:{self.person}:{self.channel}"


def reason_word(reason: str) -> str:
    """`breached` of `breached`, `breached_next_reply_2` and `resolved.breached`'s base."""
    return reason.split(".")[0].split("_", 1)[0]


def sla_reason(word: str, data: SlaWarning | SlaBreached | SlaMet) -> str:
    """The reason of a trigger from an sla event: first_response's as before metrics."""
    if data.metric == "first_response":
        return word
    if data.metric == "resolution":
        return f"{word}_resolution"
    return f"{word}_{data.metric}_{data.round}"


def _trigger(data: EventData, notes: TicketNotes, oncall: OnCall) -> tuple[str, NotifyRule] | None:
    match data:
        case TicketOpened(ticket=ticket) if ticket.premium:
            severity = notes.severity or ticket.severity
            if severity == "business_critical":
                return "opened", oncall.notify.opened_business_critical
            return "opened", oncall.notify.opened_standard
        case SlaWarning(guaranteed=guaranteed):
            rules = oncall.notify.of(data.metric)
            rule = rules.warning_guaranteed if guaranteed else rules.warning_target
            return sla_reason("warning", data), rule
        case SlaBreached(guaranteed=False):
            return sla_reason("missed", data), oncall.notify.of(data.metric).missed_target
        case SlaBreached(severity="business_critical"):
            rule = oncall.notify.of(data.metric).breached_business_critical
            return sla_reason("breached", data), rule
        case SlaBreached():
            return sla_reason("breached", data), oncall.notify.of(data.metric).breached_standard
    return None


def _route(
    ticket_id: str, reason: str, rule: NotifyRule, oncall: OnCall, now: datetime
) -> list[Notification]:
    out: list[Notification] = []
    seen: set[str] = set()
    for level in rule.levels:
        people = who_is_on_call(oncall, level, now)
        if not people and oncall.team_channel is not None:
            out.append(_team(ticket_id, reason, level))
        for person in people:
            if person.id in seen:
                continue
            seen.add(person.id)
            out.append(_to_person(ticket_id, reason, level, person, rule.kind, oncall))
    if rule.team and oncall.team_channel is not None:
        out.append(_team(ticket_id, reason, 0))
    return out


def _to_person(
    ticket_id: str, reason: str, level: int, person: Person, kind: Kind, oncall: OnCall
) -> Notification:
    """One message per person: by their first contact method of `kind`'s order, the
    others as fallbacks while it fails (as on-call tools step through contact methods)."""
    methods = [c for c in oncall.channels.of(kind) if person.has(c)] or ["email"]
    paging = methods[0] == "paging_webhook"
    return Notification(
        ticket_id=ticket_id,
        reason=reason,
        level=level,
        person=person.id,
        channel=methods[0],
        action="trigger" if paging else "notify",
        dedup_key=f"{ticket_id}:{reason}" if paging else None,
        fallbacks=tuple(methods[1:]),
        kind=kind,
    )


def escalate(
    failed: Notification, oncall: OnCall, now: datetime, already: set[str]
) -> list[Notification]:
    """Nobody at `failed`'s level could be reached: page the next level, as on-call tools
    escalate (the people of the next level not in `already`, by person id)."""
    if failed.kind != "page" or failed.person == TEAM:
        return []
    level = failed.level + 1
    try:
        oncall.level(level)
    except ValueError:
        return []  # no higher level: the team channel is told when the page is given up
    people = [p for p in who_is_on_call(oncall, level, now) if p.id not in already]
    return [_to_person(failed.ticket_id, failed.reason, level, p, "page", oncall) for p in people]


def _team(ticket_id: str, reason: str, level: int) -> Notification:
    return Notification(
        ticket_id=ticket_id,
        reason=reason,
        level=level,
        person=TEAM,
        channel="team_digest",
        action="notify",
    )


def _of_met(reason: str, met: SlaMet | None) -> bool:
    """Whether a page's `reason` is stopped by `met` (None: by anything, the ticket closed).
    first_response's met stops its own pages and `opened`; another metric's, its round's."""
    if met is None:
        return True
    if met.metric == "first_response":
        return "_" not in reason
    return reason.split("_", 1)[-1] == sla_reason("x", met).split("_", 1)[-1]


def _follow_up(
    notes: TicketNotes, action: Action, oncall: OnCall, met: SlaMet | None = None
) -> list[Notification]:
    """`acknowledge` or `resolve` each page that was triggered, on the same webhook."""
    word = "acknowledged" if action == "acknowledge" else "resolved"
    out: list[Notification] = []
    for page in notes.pages:
        if not _of_met(page.reason, met):
            continue
        person = oncall.person(page.person)
        if person is None or person.paging_webhook is None:
            continue  # removed from the on-call file since: nothing to send to
        out.append(
            Notification(
                ticket_id=notes.ticket_id,
                reason=f"{word}.{page.reason}",
                level=page.level,
                person=page.person,
                channel="paging_webhook",
                action=action,
                dedup_key=f"{notes.ticket_id}:{page.reason}",
            )
        )
    return out


STOPPED_BY_MET = ("met", "responded_late")  # first response given: later metrics still count


def _other_metric(data: EventData) -> bool:
    return isinstance(data, SlaWarning | SlaBreached) and data.metric != "first_response"


def decide(
    event_type: str,
    data: EventData,
    notes: TicketNotes | None,
    oncall: OnCall,
    now: datetime,
) -> list[Notification]:
    """The notifications for one event. `event_type` is the CloudEvents type
    (`support.sla.breached`) and must match `data`; `notes` is what is known about the
    ticket, before or after noting this event (`note_event` is applied here, it is a
    merge). Pages need `record_pages` afterwards so acknowledgements and resolutions
    find them."""
    expected = TYPE_OF.get(type(data))
    if expected != event_type:
        raise ValueError(f"event type {event_type!r} does not match {type(data).__name__}")
    notes = note_event(notes, data)
    if isinstance(data, EscalationAcknowledged):
        return _follow_up(notes, "acknowledge", oncall)
    if isinstance(data, SlaMet):
        return _follow_up(notes, "resolve", oncall, data)
    if isinstance(data, TicketResolved):
        return _follow_up(notes, "resolve", oncall)
    if notes.closed is not None and not (_other_metric(data) and notes.closed in STOPPED_BY_MET):
        return []
    found = _trigger(data, notes, oncall)
    if found is None:
        return []
    reason, rule = found
    if rule.unless_acknowledged and notes.acknowledged:
        return []
    return _route(notes.ticket_id, reason, rule, oncall, now)


def decide_event(
    event: CloudEvent, notes: TicketNotes | None, oncall: OnCall
) -> list[Notification]:
    """`decide` for a CloudEvent, resolving who is on call at the event's own time."""
    return decide(event.type, event.parsed(), notes, oncall, event.time)

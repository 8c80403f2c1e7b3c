"""What an operator runs against the clock store: `sla explain` and `sla recompute`.

`explain_clock` is pure: why a clock's deadline is where it is (rule, pinned policy
version, calendar, start/warn/due in UTC and local time, and the span from start to due
cut into counted and skipped segments). `render_explanation` turns it into a rich Table.

`recompute` (in `services.sla_timer.recompute`, re-exported here) migrates clocks to a
new policy.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from services.sla_timer.calendar import WEEKDAYS, BusinessCalendar
from services.sla_timer.clock import Clock, ClockState
from services.sla_timer.explain import Segment, cut_pauses, explain_span
from services.sla_timer.pauses import Pause, paused_business_time
from services.sla_timer.policy import Policy
from services.sla_timer.recompute import Moved, migrate_clock, recompute

__all__ = [
    "CalendarInfo",
    "Explanation",
    "Moved",
    "PauseInfo",
    "explain_clock",
    "migrate_clock",
    "recompute",
    "render_explanation",
]


# -- explain ---------------------------------------------------------------------------


class CalendarInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    timezone: str
    always_open: bool
    hours: dict[str, list[str]]  # weekday -> ["09:00-17:30", ...]; empty when 24/7
    holidays: str | None  # "NL", "US-CA"
    closed_dates: list[date]

    @classmethod
    def of(cls, cal: BusinessCalendar) -> CalendarInfo:
        hours = {
            day: [f"{iv.start}-{iv.end}" for iv in cal.hours[day]]
            for day in WEEKDAYS
            if cal.hours.get(day)
        }
        holidays = None
        if cal.holidays is not None:
            holidays = cal.holidays.country + (
                f"-{cal.holidays.subdiv}" if cal.holidays.subdiv else ""
            )
        return cls(
            name=cal.name,
            timezone=cal.timezone,
            always_open=cal.always_open,
            hours=hours,
            holidays=holidays,
            closed_dates=list(cal.closed_dates),
        )

    def hours_text(self) -> str:
        if self.always_open:
            return "24/7"
        return ", ".join(f"{day} {' '.join(ivs)}" for day, ivs in self.hours.items())


class PauseInfo(BaseModel):
    """One pause of the clock: `given_back` is the business time inside it (None while
    still paused, or when the current policy lacks the clock's calendar)."""

    model_config = ConfigDict(frozen=True)

    started_at: AwareDatetime
    ended_at: AwareDatetime | None
    given_back: timedelta | None


class Explanation(BaseModel):
    model_config = ConfigDict(frozen=True)

    ticket_id: str
    metric: str = "first_response"
    round: int = 1
    state: ClockState
    channel: str
    role: str
    severity: str
    call_kind: str | None
    premium: bool
    rule: str
    policy_version: str  # pinned in the clock
    current_policy_version: str  # of the policy the calendar and budget were read from
    budget: str | None  # the rule's budget in the current policy, if it has the rule
    warn: str | None
    guaranteed: bool
    calendar_name: str
    calendar: CalendarInfo | None  # None: the current policy has no such calendar
    started_at: AwareDatetime
    warn_at: AwareDatetime | None
    due_at: AwareDatetime
    started_local: AwareDatetime | None
    warn_local: AwareDatetime | None
    due_local: AwareDatetime | None
    warned: bool
    breached_at: AwareDatetime | None
    stopped_at: AwareDatetime | None
    segments: list[Segment]
    counted: timedelta  # business time from start to due: the counted segments, less pauses
    notes: list[str]
    pauses: list[PauseInfo] = []


_IDLE = {
    "next_reply": "no round running: the next customer follow-up after an agent reply starts one",
    "periodic_update": "no round running: the next agent reply starts one",
}


def explain_clock(clock: Clock, policy: Policy) -> Explanation:
    """Why `clock`'s deadlines are where they are, read against `policy`'s calendar."""
    notes: list[str] = []
    if clock.policy_version != policy.version:
        notes.append(
            f"the clock is pinned to policy {clock.policy_version}; the calendar and budget "
            f"shown are from the current policy {policy.version} "
            "(`premium-support sla recompute` migrates running clocks)"
        )
    cal = policy.calendars.get(clock.calendar)
    rule = next((r for r in policy.rules if r.name == clock.rule), None)
    if rule is None:
        notes.append(f"the current policy has no rule {clock.rule!r}")
    segments: list[Segment] = []
    if cal is None:
        notes.append(f"the current policy has no calendar {clock.calendar!r}")
    else:
        spans = [(p.started_at, p.ended_at) for p in clock.pauses]
        segments = cut_pauses(explain_span(cal, clock.started_at, clock.due_at), spans)

    def local(value: datetime | None) -> datetime | None:
        return value.astimezone(cal.zone) if value is not None and cal is not None else None

    pauses = _pause_infos(clock, cal)
    if clock.paused:
        notes.append(
            "paused (waiting on the customer): nothing fires until it resumes; due at is "
            "when it would be due had it resumed at the last update"
        )
    warn = None
    if rule is not None and rule.warn is not None:
        if rule.warn.fraction is not None:
            warn = f"after {rule.warn.fraction:g} of the budget"
        elif rule.warn.before is not None:
            warn = f"{_duration_text(rule.warn.before)} before due"
    if clock.state == "idle":
        notes.append(_IDLE.get(clock.metric, "no round running"))
        segments = []
    return Explanation(
        ticket_id=clock.ticket_id,
        metric=clock.metric,
        round=clock.round,
        state=clock.state,
        channel=clock.channel,
        role=clock.role,
        severity=clock.severity,
        call_kind=clock.call_kind,
        premium=clock.premium,
        rule=clock.rule,
        policy_version=clock.policy_version,
        current_policy_version=policy.version,
        budget=str(rule.budget) if rule is not None and rule.budget is not None else None,
        warn=warn,
        guaranteed=clock.guaranteed,
        calendar_name=clock.calendar,
        calendar=CalendarInfo.of(cal) if cal is not None else None,
        started_at=clock.started_at.astimezone(UTC),
        warn_at=clock.warn_at.astimezone(UTC) if clock.warn_at else None,
        due_at=clock.due_at.astimezone(UTC),
        started_local=local(clock.started_at),
        warn_local=local(clock.warn_at),
        due_local=local(clock.due_at),
        warned=clock.warned,
        breached_at=clock.breached_at,
        stopped_at=clock.stopped_at,
        segments=segments,
        counted=sum((s.duration for s in segments if s.kind == "counted"), timedelta(0)),
        notes=notes,
        pauses=pauses,
    )


def _pause_infos(clock: Clock, cal: BusinessCalendar | None) -> list[PauseInfo]:
    def given_back(p: Pause) -> timedelta | None:
        if cal is None or p.ended_at is None:
            return None
        # only what fell between start and due: the rest was never counted
        begin, end = max(p.started_at, clock.started_at), min(p.ended_at, clock.due_at)
        return paused_business_time(cal, [Pause(begin, end)], end) if begin < end else timedelta(0)

    return [
        PauseInfo(started_at=p.started_at, ended_at=p.ended_at, given_back=given_back(p))
        for p in clock.pauses
    ]


def _duration_text(value: timedelta) -> str:
    """`2d 15h30m`, `7h`, `45s`; whole seconds."""
    total = int(value.total_seconds())
    days, rest = divmod(total, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    clock = "".join(f"{n}{u}" for n, u in ((h, "h"), (m, "m"), (s, "s")) if n)
    if days:
        return f"{days}d {clock}".rstrip()
    return clock or "0s"


def _when(utc: datetime | None, zone: str | None) -> str:
    """`2026-11-27 15:00:00 UTC  (Fri 2026-11-27 16:00:00 CET)`; local part unless UTC."""
    if utc is None:
        return "-"
    text = f"{utc.astimezone(UTC):%a %Y-%m-%d %H:%M:%S} UTC"
    if zone is not None and zone != "UTC":
        text += f"  ({utc.astimezone(ZoneInfo(zone)):%a %Y-%m-%d %H:%M:%S %Z})"
    return text


_SEGMENT_STYLE = {
    "counted": "green",
    "night": "dim",
    "weekend": "dim",
    "holiday": "yellow",
    "closed": "dim",
    "paused": "cyan",
}


def _why(seg: Segment) -> str:
    # a counted label is `Fri 2026-11-27 09:00-17:30`: the from/to columns give the day
    if seg.kind == "counted" and seg.label != "24/7":
        return f"open {seg.label.rsplit(' ', 1)[-1]}"
    return seg.label


def render_explanation(expl: Explanation) -> RenderableType:
    """A rich Table: the clock's facts, the span from start to due in segments, notes."""
    cal = expl.calendar
    zone = cal.timezone if cal is not None else None

    facts = Table.grid(padding=(0, 2))
    facts.add_column("field", style="bold", no_wrap=True)
    facts.add_column("value")
    kind = "guaranteed" if expl.guaranteed else "target"
    facts.add_row("state", expl.state + (" (warning sent)" if expl.warned else ""))
    facts.add_row(
        "ticket",
        f"{expl.channel}"
        + (f" ({expl.call_kind})" if expl.call_kind else "")
        + f", {expl.role}, {expl.severity}, premium={str(expl.premium).lower()}",
    )
    facts.add_row("rule", f"{expl.rule} ({kind})")
    facts.add_row("policy", f"version {expl.policy_version} (pinned in the clock)")
    if expl.budget is not None:
        warn = f", warn {expl.warn}" if expl.warn else ""
        facts.add_row("budget", f"{expl.budget}{warn}")
    if cal is not None:
        facts.add_row("calendar", f"{cal.name} ({cal.timezone}): {cal.hours_text()}")
        if cal.holidays:
            facts.add_row("holidays", f"public holidays of {cal.holidays}")
        if cal.closed_dates:
            facts.add_row("closed", ", ".join(d.isoformat() for d in cal.closed_dates))
    else:
        facts.add_row("calendar", f"{expl.calendar_name} (not in the current policy)")
    if expl.state != "idle":  # an idle clock has no instants yet
        facts.add_row("started", _when(expl.started_at, zone))
        facts.add_row("warn at", _when(expl.warn_at, zone))
        facts.add_row("due at", _when(expl.due_at, zone))
    if expl.breached_at is not None:
        facts.add_row("breached", _when(expl.breached_at, zone))
    if expl.stopped_at is not None:
        facts.add_row("stopped", _when(expl.stopped_at, zone))
    for pause in expl.pauses:
        back = "" if pause.given_back is None else f", {_duration_text(pause.given_back)} back"
        until = _when(pause.ended_at, zone) if pause.ended_at else "still paused"
        facts.add_row("paused", f"{_when(pause.started_at, zone)} -> {until}{back}")
    if expl.state != "idle":
        counted = _duration_text(expl.counted)
        facts.add_row("counted", f"{counted} of business time, start to due")

    rounds = f", round {expl.round}" if expl.metric in ("next_reply", "periodic_update") else ""
    table = Table(
        title=f"SLA clock {expl.ticket_id}: {expl.metric.replace('_', ' ')}{rounds}",
        title_justify="left",
        title_style="bold",
        show_header=False,
        box=None,
        padding=(0, 0, 1, 0),
    )
    table.add_column("section")
    table.add_row(facts)
    if expl.segments:
        tz = ZoneInfo(zone or "UTC")
        spans = Table(title=f"from start to due ({zone or 'UTC'})", title_justify="left")
        spans.add_column("segment")
        spans.add_column("from", no_wrap=True)
        spans.add_column("to", no_wrap=True)
        spans.add_column("length", justify="right", no_wrap=True)
        spans.add_column("why")
        for seg in expl.segments:
            spans.add_row(
                Text(seg.kind, style=_SEGMENT_STYLE[seg.kind]),
                f"{seg.start.astimezone(tz):%a %d %b %H:%M}",
                f"{seg.end.astimezone(tz):%a %d %b %H:%M}",
                _duration_text(seg.duration),
                _why(seg),
            )
        table.add_row(spans)
    for note in expl.notes:
        table.add_row(Text(f"note: {note}", style="yellow"))
    return table

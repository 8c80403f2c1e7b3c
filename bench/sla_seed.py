"""The clocks of bench/sla_timer_scale.py: what sla_timer itself would have written.

Seeding (bulk SQL, for speed): `TEMPLATES` real clocks are made by the real
`open_clock` for tickets of the shapes in `BACKGROUND`, created at moments spread over
a window before now; row i is template i % TEMPLATES with its own ticket id (as intake
derives it) and correlation id, which no deadline depends on. A row is written as
`SlaTimer` writes one (`json.dumps(clock.model_dump(mode="json"))`, `next_fire()`,
the policy version, `updated_at`), with the processed id of its `ticket.opened`;
`verify` rebuilds a sample through `open_clock` and compares byte for byte.

Arming: new clocks of the shapes in `ARMED` (24/7 calendars), each created exactly its
budget before its deadline, with its warning already fired (`fire_due` at `warn_at`),
so that only their breaches are still to come, at deadlines spread evenly over one
second.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from schemas.events import TYPE_OF, CloudEvent, TicketOpened, event_id, make_event
from schemas.ticket import Submitter, Ticket
from services.intake.ids import ticket_id
from services.runtime.messages import Outgoing
from services.sla_timer.clock import Clock, fire_due, open_clock
from services.sla_timer.policy import Policy, load_policy
from services.sla_timer.store import ClockStore, clocks, processed

OPENED = TYPE_OF[TicketOpened]
TEMPLATES = 4096
# (channel, role, severity, call kind, weight, created up to this many s before now). The
# windows keep every background clock's next instant well after a run of the bench.
BACKGROUND = (
    ("email", "user", "standard", None, 6, 4 * 3600),  # one business day
    ("phone", "user", "standard", "inbound_call", 2, 4 * 3600),  # one business day
    ("email", "super_admin", "standard", None, 1, 600),  # 1 h, warned 15 min before
    ("email", "super_admin", "business_critical", None, 1, 120),  # 30 min, warned 10 before
)
ARMED = (
    ("email", "super_admin", "business_critical", None),
    ("email", "super_admin", "standard", None),
    ("chat", "user", "standard", None),
    ("phone", "user", "standard", "callback_request"),
)
MIN_AHEAD = timedelta(minutes=15)  # no background clock fires sooner than this
TEXT = (
    "We would like to add two colleagues from the finance department to our portal. "
    "Could you tell me whether the annual plan includes the extra storage we discussed? "
    "Our marketing team prefers to receive the weekly summary on Monday mornings. "
    "I noticed that the date format in the PDF export follows the American style. "
    "Please let me know if you need any further details from our side. Thanks a lot!"
)


def ticket(shape: tuple[Any, ...], source_id: str, created_at: datetime) -> Ticket:
    channel, role, severity, call_kind = shape[:4]
    return Ticket(
        ticket_id=ticket_id(channel, source_id),
        channel=channel,
        portal_id=4411,
        account_name="Acme Corp",
        premium=True,
        timezone="Europe/Amsterdam",
        submitter=Submitter(
            role=role,
            user_id="u-19" if role == "super_admin" else "u-20",
            email="ana@acme.example" if role == "super_admin" else "bo@acme.example",
            phone="+31205550134" if channel == "phone" else None,
        ),
        severity=severity,
        submitter_marked_critical=severity == "business_critical",
        call_kind=call_kind,
        subject="Question about our portal" if channel != "phone" else "Inbound call",
        text=TEXT,
        created_at=created_at,
    )


def real_clock(t: Ticket, policy: Policy, correlation_id: str) -> Clock:
    opened = open_clock(t, policy, correlation_id)
    if opened is None:
        raise RuntimeError(f"the policy gives {t.channel}/{t.submitter.role} no clock")
    return opened[0]


@dataclass(frozen=True)
class Template:
    ticket: Ticket
    json: str  # json.dumps(clock.model_dump(mode="json")), its two ids as placeholders
    next_fire_at: datetime
    policy_version: str


# NOTE: the ids put in their place are ASCII without quotes or backslashes, so
# json.dumps would write them as they are: a replace gives the same bytes, faster.
IDS = {"ticket_id": "@@TICKET@@", "correlation_id": "@@CORRELATION@@"}


class Seeder:
    def __init__(self, store: ClockStore, now: datetime, templates: int = TEMPLATES) -> None:
        self.store, self.now, self.policy = store, now, load_policy()
        rng = random.Random(11)
        shapes = [s for s in BACKGROUND for _ in range(s[4])]
        self.templates = []
        for k in range(templates):
            shape = rng.choice(shapes)
            created = now - timedelta(seconds=rng.uniform(0, shape[5]))
            t = ticket(shape, f"template-{k}", created)
            clock = real_clock(t, self.policy, f"template-{k}")
            nfa = clock.next_fire()
            if nfa is None or nfa < now + MIN_AHEAD:
                raise RuntimeError(f"a background clock would fire at {nfa}: {shape}")
            data = json.dumps(clock.model_dump(mode="json") | IDS)
            self.templates.append(Template(t, data, nfa, clock.policy_version))

    def rows(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Clock row i and the processed id of its ticket.opened."""
        tpl = self.templates[i % len(self.templates)]
        tid = ticket_id(tpl.ticket.channel, f"seed-{i}")
        data = tpl.json.replace(IDS["ticket_id"], tid).replace(IDS["correlation_id"], f"seed-{i}")
        clock = {
            "ticket_id": tid,
            "state": "running",
            "next_fire_at": tpl.next_fire_at,
            "policy_version": tpl.policy_version,
            "data": data,
            "updated_at": self.now,
        }
        return clock, {"event_id": event_id(tid, OPENED, "opened"), "at": self.now}

    def seed(self, count: int, batch: int) -> None:
        for start in range(0, count, batch):
            pairs = [self.rows(i) for i in range(start, min(count, start + batch))]
            with self.store.transaction() as conn:
                conn.execute(clocks.insert(), [c for c, _ in pairs])
                conn.execute(processed.insert(), [p for _, p in pairs])

    def verify(self, count: int, sample: int = 200) -> None:
        """Rows as the service writes them: rebuilt through open_clock, compared exactly."""
        for i in random.Random(count).sample(range(count), min(sample, count)):
            row, seen = self.rows(i)
            tpl = self.templates[i % len(self.templates)]
            t = tpl.ticket.model_copy(update={"ticket_id": row["ticket_id"]})
            clock = real_clock(t, self.policy, f"seed-{i}")
            event = opened_event(t, f"seed-{i}", self.now)
            if json.dumps(clock.model_dump(mode="json")) != row["data"]:
                raise RuntimeError(f"seeded clock {i} differs from open_clock's")
            if clock.next_fire() != row["next_fire_at"] or event.id != seen["event_id"]:
                raise RuntimeError(f"seeded row {i}: next_fire_at or processed id differs")

    def arm(self, count: int, first_due: datetime) -> list[str]:
        """`count` new clocks breaching at first_due + k/count s (k = 0..count-1), their
        warnings already fired; returns their ticket ids."""
        budgets = {s: self._budget(s) for s in ARMED}
        clock_rows: list[dict[str, Any]] = []
        seen_rows: list[dict[str, Any]] = []
        for k in range(count):
            shape = ARMED[k % len(ARMED)]
            due = first_due + timedelta(seconds=k / count)
            cid = f"armed-{k}"
            clock = real_clock(ticket(shape, cid, due - budgets[shape]), self.policy, cid)
            if clock.due_at != due or clock.warn_at is None:
                raise RuntimeError(f"armed clock {k}: due {clock.due_at}, not {due}")
            clock, _ = fire_due(clock, clock.warn_at)  # its warning went out before
            clock_rows.append(
                {
                    "ticket_id": clock.ticket_id,
                    "state": clock.state,
                    "next_fire_at": clock.next_fire(),
                    "policy_version": clock.policy_version,
                    "data": json.dumps(clock.model_dump(mode="json")),
                    "updated_at": self.now,
                }
            )
            seen_rows.append(
                {"event_id": event_id(clock.ticket_id, OPENED, "opened"), "at": self.now}
            )
        with self.store.transaction() as conn:
            conn.execute(clocks.insert(), clock_rows)
            conn.execute(processed.insert(), seen_rows)
        return [r["ticket_id"] for r in clock_rows]

    def _budget(self, shape: tuple[Any, ...]) -> timedelta:
        clock = real_clock(ticket(shape, "probe", self.now), self.policy, "probe")
        return clock.due_at - clock.started_at


def opened_event(t: Ticket, correlation_id: str, now: datetime) -> CloudEvent:
    """The ticket.opened intake publishes for `t` (services.intake.normalize.opened)."""
    return make_event(
        TicketOpened(ticket=t),
        service="intake",
        subject=t.ticket_id,
        cause="opened",
        correlation_id=correlation_id,
        now=now,
    )


def opened_events(count: int, now: datetime) -> list[Outgoing]:
    """`count` ticket.opened events as intake publishes them, for tickets whose clocks
    fire long after the bench (one business day, or a guaranteed hour)."""
    shapes = [s for s in BACKGROUND[:3] for _ in range(s[4])]
    out = []
    for i in range(count):
        t = ticket(shapes[i % len(shapes)], f"ingest-{i}@{now.timestamp()}", now)
        out.append(Outgoing.event(opened_event(t, f"ingest-{i}", now)))
    return out

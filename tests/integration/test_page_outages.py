"""Outages never lose a page (the issue): the paging endpoint and the SMTP server each go
down (not both at once, then both at once) during a stream of business-critical tickets;
every page arrives exactly once, on its channel after recovery or on a fallback channel,
none lost, none twice.

Intake, sla_timer and notifier run in this process on the real broker; the tickets come
in from the outside with pika (the in-app support form of a Super Admin), at a steady
rate across the whole run. Level 1 (kim) is paged by `paging_webhook`, then `email`
(`channels: {page: [paging_webhook, email]}`); level 2 (lars) uses the same two
endpoints, so when both are down nobody can be reached at either level.

The timeline (OUTAGE = PAGE_OUTAGE_S, 15 s by default so CI stays short; 120 s is the
issue's full length; GAP = PAGE_RECOVERY_S, 5 s):

    LEAD | paging down OUTAGE | GAP | SMTP down OUTAGE | GAP | both down OUTAGE | TAIL

What the design does, and what is asserted:

1. paging down: the webhook attempt fails, email is tried at once and works: the page
   arrives by email (a fallback), or by the webhook if its first try came after recovery.
2. SMTP down: nothing tries email at all; pages go by the webhook, as fast as ever.
3. both down: a page's first round (webhook, then email) fails, so nobody at level 1
   was reached: level 2 is queued (and cannot be reached either). Both keep retrying in
   rounds (SEND_RETRY_INITIAL_S .. SEND_RETRY_MAX_S, well inside the budget) and arrive
   once each after recovery. Level 2 is paged for exactly those tickets whose level-1
   page failed a full round (read from the send queue), for no other.

Every notification key has exactly one `escalation.sent` (captured from support.events)
naming the channel it really went by; nothing is given up, cancelled or dead-lettered.

PAGE_OUTAGE_MODE: `mixed` (default): the single-endpoint outages are really down
(listening socket closed, connections cut, connections refused), the outage of both
answers errors (HTTP 503, SMTP 451) so every failed attempt is visible from outside;
`refuse`: every outage really down; `error`: every outage answers errors; `hang`:
every outage a black hole (connections made, never answered), so each attempt lasts
the channel's timeout (10 s): there a page may be later than promised (the fallback
waits one timeout, and the paging pool holds only so many hanging attempts), which is
reported as an expected failure once everything else held; lost or doubled pages
still fail. PAGE_OUTAGE_TICKETS (200), PAGE_OUTAGE_STORE (`sqlite` or `postgresql` for
the notifier's store). The run's figures are printed (pytest -s) and recorded as the
test's `page_outage_figures` property.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
import sqlalchemy as sa

from services.common.store_engine import engine_for
from services.intake.ids import ticket_id
from services.intake.main import IntakeSettings
from services.intake.main import bootstrap as intake_bootstrap
from services.notifier.channels_base import DEFAULT_TIMEOUT_S as CHANNEL_TIMEOUT_S
from services.notifier.main import NotifierSettings
from services.notifier.main import bootstrap as notifier_bootstrap
from services.notifier.oncall import coverage_gaps, load_oncall
from services.notifier.sends import SendQueue, SendRow, sends_table
from services.runtime.app import ServiceRunner, declare_topology
from services.runtime.logging import configure_logging
from services.runtime.metrics import RuntimeMetrics
from services.runtime.names import SERVICE_BINDINGS, Names
from services.sla_timer.main import SlaSettings
from services.sla_timer.main import bootstrap as sla_bootstrap
from services.upstream import UpstreamPublisher
from tests.integration.conftest import ACCOUNTS, RunningService, pg_schema
from tests.support.capture import Capture, Received, queue_depth
from tests.support.sinks import HttpSink, SmtpSink

pytestmark = pytest.mark.broker

OUTAGE_S = float(os.environ.get("PAGE_OUTAGE_S", "15"))
GAP_S = float(os.environ.get("PAGE_RECOVERY_S", "5"))
TICKETS = int(os.environ.get("PAGE_OUTAGE_TICKETS", "200"))
MODE = os.environ.get("PAGE_OUTAGE_MODE", "mixed")
STORE = os.environ.get("PAGE_OUTAGE_STORE", "sqlite")
LEAD_S = 3.0  # tickets flowing normally before the first outage, and after the last
RETRY_INITIAL_S = 0.2
RETRY_MAX_S = 2.0
# A page that meets no outage, or only one endpoint's, arrives within this (the email
# fallback is tried at once); a page held up by both arrives at most one backoff (plus
# its jitter) after they are back.
PROMPT_S = 3.0
RECOVERY_S = RETRY_MAX_S * 1.5 + 2.0
# An email page (a fallback) was sent while the paging endpoint was down, or soon after
# it came back: a round whose webhook attempt failed just before goes on to email at
# once, though behind the other sends of the recovery.
FALLBACK_GRACE_S = RECOVERY_S

Down = Literal["refuse", "error", "hang"]
HOW: dict[str, tuple[Down, Down, Down]] = {
    "mixed": ("refuse", "refuse", "error"),
    "refuse": ("refuse", "refuse", "refuse"),
    "error": ("error", "error", "error"),
    "hang": ("hang", "hang", "hang"),
}


@dataclass
class Window:
    name: str
    start: float = 0.0
    end: float = 0.0

    def covers(self, t: float, before: float = 0.0, after: float = 0.0) -> bool:
        return self.start - before <= t <= self.end + after


@dataclass
class Page:
    ticket_id: str
    person: str
    channel: str  # paging_webhook | email
    key: str  # the notification key the channel carried
    at: float


@dataclass
class Run:
    published: dict[str, float] = field(default_factory=dict)  # ticket id -> monotonic
    windows: dict[str, Window] = field(default_factory=dict)
    started: float = 0.0
    ended: float = 0.0
    cpu_s: float = 0.0  # process time of this process (the services and the sinks)
    claims: dict[str, int] = field(default_factory=dict)


def write_oncall(path: Path, pager: HttpSink, team: HttpSink) -> Path:
    today = datetime.now(UTC).date()
    start = today - timedelta(days=today.weekday() + 7)  # a Monday in the past
    path.write_text(
        f"""
version: page-outages
people:
  - {{id: kim, name: Kim, email: kim@support.example, timezone: Europe/Amsterdam,
     paging_webhook: {{url: "{pager.url}", routing_key: RKIM}}}}
  - {{id: lars, name: Lars, email: lars@support.example,
     paging_webhook: {{url: "{pager.url}", routing_key: RLARS}}}}
schedules:
  primary: {{timezone: UTC, rotation: [kim], handoff: {{weekday: mon, hour: 9}}, start: {start}}}
  secondary: {{timezone: UTC, rotation: [lars], handoff: {{weekday: mon, hour: 9}}, start: {start}}}
escalation:
  - {{level: 1, schedules: [primary]}}
  - {{level: 2, schedules: [secondary]}}
team_channel: {{name: team, chat_webhook: "{team.url}", timezone: UTC}}
link_template: "https://helpdesk.example/tickets/{{ticket_id}}"
channels:
  page: [paging_webhook, email]
"""
    )
    return path


def form_email(message_id: str, received: datetime, n: int) -> bytes:
    """The in-app support form of portal 4411's Super Admin, business-critical ticked."""
    return json.dumps(
        {
            "message_id": message_id,
            "portal_id": 4411,
            "from": "Ana Ruiz <ana@acme.example>",
            "subject": f"CMS down for every team ({n})",
            "text": "None of our editors can reach the CMS since this morning.",
            "html": None,
            "received_at": received.isoformat(),
            "in_reply_to": None,
            "references": [],
            "form": {"business_critical": True, "user_id": "u-19"},
        }
    ).encode()


@dataclass
class Desk:
    pager: HttpSink
    team: HttpSink
    smtp: SmtpSink
    oncall: Path


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    pager, team, smtp = HttpSink(), HttpSink(status=200), SmtpSink()
    path = write_oncall(tmp_path / "oncall.yaml", pager, team)
    assert coverage_gaps(load_oncall(path), datetime.now(UTC)) == []
    yield Desk(pager, team, smtp, path)
    for sink in (pager, team, smtp):
        sink.close()


@pytest.fixture
def notifier_store(tmp_path: Path) -> Iterator[str]:
    if STORE == "sqlite":
        yield str(tmp_path / "notifier.db")
        return
    assert STORE == "postgresql", f"PAGE_OUTAGE_STORE={STORE!r}: sqlite or postgresql"
    with pg_schema() as url:
        yield url


@pytest.fixture
def escalations(amqp_url: str, prefix: str) -> Capture:
    """escalation.* on support.events, from the outside (named so `prefix` deletes it)."""
    configure_logging("console", "error")  # every failed attempt logs a warning
    settings = IntakeSettings(AMQP_URL=amqp_url, AMQP_PREFIX=prefix, ACCOUNTS_FILE=ACCOUNTS)
    declare_topology(settings)
    return Capture.bind(
        amqp_url, f"{prefix}test.capture", Names(prefix).events_exchange, ("escalation.#",)
    )


@pytest.fixture
def claims(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often the sender claimed due sends and gave claimed ones back unstarted (a
    spy on SendQueue; the calls go through unchanged)."""
    seen: Counter[str] = Counter()
    claim, release = SendQueue.claim, SendQueue.release

    def counted_claim(self: SendQueue, *args: Any, **kwargs: Any) -> list[SendRow]:
        rows = claim(self, *args, **kwargs)
        seen["claims"] += 1
        seen["claimed_rows"] += len(rows)
        return rows

    def counted_release(self: SendQueue, keys: list[str]) -> None:
        seen["released_rows"] += len(keys)
        release(self, keys)

    monkeypatch.setattr(SendQueue, "claim", counted_claim)
    monkeypatch.setattr(SendQueue, "release", counted_release)
    return seen


@pytest.fixture
def pipeline(
    claims: Counter[str],
    amqp_url: str,
    prefix: str,
    escalations: Capture,
    desk: Desk,
    notifier_store: str,
    tmp_path: Path,
) -> Iterator[None]:
    common = {"AMQP_URL": amqp_url, "AMQP_PREFIX": prefix}
    intake = IntakeSettings(**common, ACCOUNTS_FILE=ACCOUNTS, RETRY_INITIAL_S=0.05, RETRY_MAX_S=0.2)
    sla = SlaSettings(**common, SLA_STORE_URL=str(tmp_path / "clocks.db"), SLA_TICK_S=0.2)
    notifier = NotifierSettings(
        **common,
        ONCALL_FILE=desk.oncall,
        NOTIFIER_STORE_URL=notifier_store,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=desk.smtp.port,
        SEND_RETRY_INITIAL_S=RETRY_INITIAL_S,
        SEND_RETRY_MAX_S=RETRY_MAX_S,
    )  # SEND_RETRY_BUDGET_S: the default 900 s, far longer than any outage here
    services = [
        RunningService(ServiceRunner(spec, s, RuntimeMetrics.create())).start()
        for spec, s in (
            (intake_bootstrap(intake), intake),
            (sla_bootstrap(sla), sla),
            (notifier_bootstrap(notifier), notifier),
        )
    ]
    yield
    for service in reversed(services):
        service.stop()


# --- the run -------------------------------------------------------------------------


def publish_stream(
    url: str, prefix: str, ids: list[str], t0: float, interval: float, run: Run
) -> None:
    """Publish ticket i at t0 + i * interval (pika, with confirms), recording when."""
    with UpstreamPublisher(url, prefix) as upstream:
        for i, message_id in enumerate(ids):
            delay = t0 + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            at = time.monotonic()
            upstream.publish("email", form_email(message_id, datetime.now(UTC), i))
            run.published[ticket_id("email", message_id)] = at


def sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def play_outages(desk: Desk, t0: float, run: Run) -> None:
    """The three outages, on schedule from t0."""
    how_pager, how_smtp, how_both = HOW[MODE]
    t = t0 + LEAD_S
    plan = (
        ("paging", ((desk.pager, how_pager),)),
        ("smtp", ((desk.smtp, how_smtp),)),
        ("both", ((desk.pager, how_both), (desk.smtp, how_both))),
    )
    for name, sinks in plan:
        sleep_until(t)
        window = run.windows[name] = Window(name, start=time.monotonic())
        for sink, how in sinks:
            sink.down(how)
        sleep_until(t + OUTAGE_S)
        for sink, _ in sinks:
            sink.up()
        window.end = time.monotonic()
        t += OUTAGE_S + GAP_S


def pages(desk: Desk) -> list[Page]:
    """Every page delivered, by either endpoint, to anyone."""
    people = {"RKIM": "kim", "RLARS": "lars"}
    out: list[Page] = []
    for hit in desk.pager.delivered:
        body = hit.json()
        assert body["event_action"] == "trigger", body
        tid, _, reason = body["dedup_key"].rpartition(":")
        assert reason == "opened", body
        out.append(
            Page(
                tid,
                people[body["routing_key"]],
                "paging_webhook",
                hit.headers["X-Notification-Key"],
                hit.at,
            )
        )
    for mail in list(desk.smtp.messages):
        tid, reason, _level, person, channel = mail.key.split(":")
        assert (reason, channel) == ("opened", "email"), mail.key
        assert mail.envelope_to == (f"{person}@support.example",)
        assert tid in str(mail.message["Subject"]), mail.message["Subject"]
        out.append(Page(tid, person, "email", mail.key, mail.at))
    return out


def send_rows(store_url: str) -> list[sa.Row]:  # type: ignore[type-arg]
    engine = engine_for(store_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.select(sends_table)))
    finally:
        engine.dispose()


def wait_until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.2)


def lateness(
    run: Run, tickets: list[str], first_page: dict[str, float], escalated: set[str]
) -> list[str]:
    """What arrived later than the design promises (empty: everything on time).

    A page that meets no outage, or an SMTP outage only, arrives at once; during a
    paging outage it goes by email at once (after one channel timeout when the webhook
    hangs); a page held up by both endpoints arrives within a backoff of their return,
    and level 2 is queued for every ticket whose first round (webhook, then email)
    failed well inside that outage."""
    both, paging = run.windows["both"], run.windows["paging"]
    timeout = CHANNEL_TIMEOUT_S if HOW[MODE][0] == "hang" else 0.0
    out = []
    for t in tickets:
        published, arrived = run.published[t], first_page[t]
        if both.covers(published, before=PROMPT_S + timeout):
            if arrived > both.end + RECOVERY_S:
                out.append(f"{t}: {arrived - both.end:.1f} s after both were back")
        elif paging.covers(published, before=PROMPT_S):
            if arrived - published > PROMPT_S + timeout:
                out.append(f"{t}: {arrived - published:.1f} s while the webhook was down")
        elif arrived - published > PROMPT_S:
            out.append(f"{t}: {arrived - published:.1f} s, no endpoint down that it needed")
    # Under the retry load of the outage a first round takes up to a few seconds (two
    # channel timeouts more when both endpoints hang).
    last = both.end - RECOVERY_S - (2 * CHANNEL_TIMEOUT_S if HOW[MODE][2] == "hang" else 0.0)
    inside = {t for t in tickets if both.start + 1.0 <= run.published[t] <= last}
    out += [
        f"{t}: came in {run.published[t] - both.start:.1f} s into the outage of both "
        f"(ending {both.end - run.published[t]:.1f} s later), but no level 2"
        for t in sorted(inside - escalated)
    ]
    if not inside and last > both.start + 1.0:
        out.append("no ticket came in while both endpoints were down")
    return out


def summarize(
    run: Run,
    tickets: list[str],
    got: list[Page],
    rows: list[sa.Row],  # type: ignore[type-arg]
    desk: Desk,
    events: list[Received],
) -> dict[str, object]:
    """The run's figures, per phase (by when a ticket was published), before any check."""
    kim = [p for p in got if p.person == "kim"]
    lars = [p for p in got if p.person == "lars"]
    first: dict[str, float] = {}
    for p in kim:
        first[p.ticket_id] = min(p.at, first.get(p.ticket_id, p.at))
    delays = {t: first[t] - run.published[t] for t in tickets if t in first and t in run.published}
    channel = {p.ticket_id: p.channel for p in kim}
    escalated = {p.ticket_id for p in lars}

    def phase_of(t: str) -> str:
        at = run.published.get(t, 0.0)
        return next((w.name for w in run.windows.values() if w.covers(at)), "no outage")

    phases: dict[str, dict[str, object]] = {}
    for name in ("no outage", *run.windows):
        mine = [t for t in tickets if phase_of(t) == name]
        ds = sorted(delays[t] for t in mine if t in delays)
        phases[name] = {
            "tickets": len(mine),
            "level1_by": dict(Counter(channel[t] for t in mine if t in channel)),
            "escalated": sum(1 for t in mine if t in escalated),
            "delay_median_s": round(ds[len(ds) // 2], 2) if ds else None,
            "delay_max_s": round(ds[-1], 2) if ds else None,
        }
        window = run.windows.get(name)
        if window is not None:  # pages that arrived while it lasted, by email (fallbacks)
            during = [p.at - window.start for p in kim if window.covers(p.at)]
            fallbacks = [
                p.at - window.start
                for p in kim
                if p.channel == "email" and window.covers(p.at, after=FALLBACK_GRACE_S)
            ]
            phases[name] |= {
                "level1_pages_while_down": len(during),
                "first_fallback_after_s": round(min(fallbacks), 2) if fallbacks else None,
            }
    both = run.windows.get("both")
    queued = {r.key: r.queued_at for r in rows}
    rounds = sorted(
        (r.queued_at - queued[f"{r.ticket_id}:opened:1:kim:paging_webhook"]).total_seconds()
        for r in rows
        if ":2:lars:" in r.key and f"{r.ticket_id}:opened:1:kim:paging_webhook" in queued
    )
    return {
        "mode": MODE,
        "outage_s": OUTAGE_S,
        "tickets": len(run.published),
        "level1_pages": dict(Counter(p.channel for p in kim)),
        "level1_tickets_paged": len(set(channel)),
        "level1_duplicates": len(kim) - len(set(channel)),
        "fallbacks_by_email": sum(1 for p in kim if p.channel == "email"),
        "level2_pages": dict(Counter(p.channel for p in lars)),
        "escalated_tickets": len(escalated),
        # level 2 paged although level 1 had been reached before (after the recovery)
        "level2_after_level1_reached": sum(
            1 for p in lars if p.ticket_id in first and p.at > first[p.ticket_id]
        ),
        # how long after level 1 was queued its first round had failed (level 2 queued)
        "level2_queued_after_s": {
            "median": round(rounds[len(rounds) // 2], 2),
            "max": round(rounds[-1], 2),
        }
        if rounds
        else None,
        "send_rows": dict(Counter(r.status for r in rows)),
        "attempts_rejected_http": len(desk.pager.rejected),
        "attempts_rejected_smtp": len(desk.smtp.rejected),
        "events": dict(Counter(r.routing_key for r in events)),
        "max_page_delay_s": round(max(delays.values()), 2) if delays else None,
        "last_page_after_recovery_s": round(max(first.values()) - both.end, 2)
        if first and both
        else None,
        "phases": phases,
        "run_s": round(run.ended - run.started, 1),
        "cpu_s": round(run.cpu_s, 1),
        "sender": run.claims,
    }


def test_outages_never_lose_a_page(
    pipeline: None,
    desk: Desk,
    escalations: Capture,
    amqp_url: str,
    prefix: str,
    notifier_store: str,
    claims: Counter[str],
    record_property: Callable[[str, object], None],
) -> None:
    run = Run()
    tag = uuid.uuid4().hex[:8]
    message_ids = [f"<outage-{tag}-{i}@mail.acme.example>" for i in range(TICKETS)]
    tickets = [ticket_id("email", m) for m in message_ids]
    span = LEAD_S + 3 * OUTAGE_S + 2 * GAP_S + LEAD_S
    interval = span / TICKETS

    run.started = t0 = time.monotonic() + 0.5
    cpu = time.process_time()
    publisher = threading.Thread(
        target=publish_stream, args=(amqp_url, prefix, message_ids, t0, interval, run)
    )
    publisher.start()
    try:
        play_outages(desk, t0, run)
    finally:
        desk.pager.up()
        desk.smtp.up()
        publisher.join(timeout=span + 30)
    assert not publisher.is_alive(), "the publisher did not finish"
    assert len(run.published) == TICKETS

    # Everything still pending goes out after the last recovery, within a backoff.
    def kim_paged_everywhere() -> bool:
        return {p.ticket_id for p in pages(desk) if p.person == "kim"} >= set(tickets)

    wait_until(kim_paged_everywhere, LEAD_S + RECOVERY_S + 30, "every ticket paged level 1")

    def queue_done() -> bool:
        return all(r.status != "pending" for r in send_rows(notifier_store))

    wait_until(queue_done, RECOVERY_S + 30, "the send queue empty")
    rows = send_rows(notifier_store)

    def all_sent_events() -> bool:
        sent = [r for r in escalations.drain() if r.routing_key == "escalation.sent"]
        return len(sent) >= len(rows)

    wait_until(all_sent_events, 30, "an escalation.sent per send")
    time.sleep(RECOVERY_S)  # any duplicate (a page or an event) would show by now
    run.ended = time.monotonic()
    run.cpu_s = time.process_time() - cpu
    run.claims = dict(claims)
    got = pages(desk)
    events = escalations.drain()
    rows = send_rows(notifier_store)
    figures = summarize(run, tickets, got, rows, desk, events)
    record_property("page_outage_figures", json.dumps(figures))
    print("\npage outage figures:", json.dumps(figures))

    # --- every page exactly once, none lost ------------------------------------------
    kim = [p for p in got if p.person == "kim"]
    per_ticket = Counter(p.ticket_id for p in kim)
    assert set(per_ticket) == set(tickets), "pages for tickets never published"
    twice = {t: n for t, n in per_ticket.items() if n != 1}
    assert not twice, f"level 1 paged more than once: {twice}"
    for p in kim:
        if p.channel == "paging_webhook":
            assert p.key == f"{p.ticket_id}:opened:1:kim:paging_webhook"
        else:
            assert p.key == f"{p.ticket_id}:opened:1:kim:email"

    # --- the send queue: every row sent, level 2 exactly where level 1 failed a round --
    assert Counter(r.status for r in rows) == Counter({"sent": len(rows)}), [
        (r.key, r.status, r.last_error) for r in rows if r.status != "sent"
    ]
    by_key = {r.key: r for r in rows}
    kim_rows = {t: by_key[f"{t}:opened:1:kim:paging_webhook"] for t in tickets}
    assert len(rows) == len(kim_rows) + sum(1 for r in rows if ":2:lars:" in r.key)
    # attempts count the successful one: >= 3 means webhook and email both failed once.
    failed_round = {t for t, r in kim_rows.items() if r.attempts >= 3}
    escalated = {r.ticket_id for r in rows if r.key.endswith(":opened:2:lars:paging_webhook")}
    assert escalated == failed_round, {
        "level 2 without a failed round": sorted(escalated - failed_round),
        "a failed round without level 2": sorted(failed_round - escalated),
    }
    for t, r in kim_rows.items():
        assert r.done_channel == next(p.channel for p in kim if p.ticket_id == t)

    lars = [p for p in got if p.person == "lars"]
    assert Counter(p.ticket_id for p in lars) == Counter(dict.fromkeys(escalated, 1)), (
        "level 2 paged other than once per escalated ticket"
    )
    for p in lars:
        assert p.key in (
            f"{p.ticket_id}:opened:2:lars:paging_webhook",
            f"{p.ticket_id}:opened:2:lars:email",
        )

    # --- when and how: fallbacks only while the webhook was down, level 2 only when both
    both, paging, smtp = run.windows["both"], run.windows["paging"], run.windows["smtp"]
    for p in kim:
        if p.channel == "email":
            row = kim_rows[p.ticket_id]
            assert paging.covers(p.at, after=FALLBACK_GRACE_S) or both.covers(
                p.at, after=FALLBACK_GRACE_S
            ), (
                f"{p.ticket_id} went by email while the webhook was up: published "
                f"{run.published[p.ticket_id] - both.end:+.1f} s, mailed {p.at - both.end:+.1f} s "
                f"from the end of the last outage, after {row.attempts - 1} failed attempts, "
                f"the last: {row.last_error}"
            )
    # Seen from outside where the webhook answered 503: each fallback followed a refusal.
    refused = {h.headers["X-Notification-Key"]: h.at for h in desk.pager.rejected[::-1]}
    for p in kim:
        window = paging if paging.covers(p.at, after=FALLBACK_GRACE_S) else both
        if p.channel == "email" and HOW[MODE][0 if window is paging else 2] == "error":
            assert refused[f"{p.ticket_id}:opened:1:kim:paging_webhook"] < p.at, p
    # Level 2 only for tickets that were waiting while both endpoints were down.
    first_page = {p.ticket_id: p.at for p in kim}
    for t in escalated:
        assert run.published[t] < both.end and first_page[t] > both.start, t
    late = lateness(run, tickets, first_page, escalated)
    if HOW[MODE][2] == "error":
        # Seen from outside: each escalated ticket's level-1 page was refused by the
        # webhook and by email before level 2 was first tried.
        refused_page = {h.headers["X-Notification-Key"]: h.at for h in desk.pager.rejected[::-1]}
        refused_mail = {m.key: m.at for m in desk.smtp.rejected[::-1]}
        lars_tries = [
            *(
                (h.json()["dedup_key"], h.at)
                for h in desk.pager.hits
                if h.json()["routing_key"] == "RLARS"
            ),
            *(
                (m.key, m.at)
                for m in [*desk.smtp.messages, *desk.smtp.rejected]
                if ":2:lars:" in m.key
            ),
        ]
        first_lars: dict[str, float] = {}
        for key, at in lars_tries:
            t = key.split(":")[0]
            first_lars[t] = min(at, first_lars.get(t, at))
        assert set(first_lars) == escalated
        for t, at in first_lars.items():
            assert refused_page[f"{t}:opened:1:kim:paging_webhook"] < at, t
            assert refused_mail[f"{t}:opened:1:kim:email"] < at, t
    if HOW[MODE][1] == "error":  # while only SMTP was down, nothing even tried email
        assert not [m for m in desk.smtp.rejected if smtp.covers(m.at)], "email tried"

    # --- the events: one escalation.sent per key, naming the channel it went by -------
    kinds = Counter(r.routing_key for r in events)
    assert set(kinds) == {"escalation.sent"}, kinds
    sent = [r.json()["data"] for r in events]
    keys = Counter(d["notification_key"] for d in sent)
    assert keys == Counter(dict.fromkeys(by_key, 1)), {k: n for k, n in keys.items() if n != 1}
    went_by = {(p.ticket_id, p.person): p.channel for p in got}
    for d in sent:
        assert d["channel"] == went_by[(d["ticket_id"], d["person"])], d

    # --- nothing dead-lettered, no team notice of an undelivered page -----------------
    names = Names(prefix)
    dead = {q: queue_depth(amqp_url, names.dead_letter_queue(q)) for q in SERVICE_BINDINGS}
    assert set(dead.values()) == {0}, dead
    assert desk.team.hits == [], [h.body[:200] for h in desk.team.hits]

    print("\npage outage figures:", json.dumps(figures))  # again, after the assertions
    if late and "hang" in HOW[MODE]:
        pytest.xfail(
            "no page lost or sent twice, but a hanging endpoint holds pages up: "
            + "; ".join(late[:5])
        )
    assert not late, late

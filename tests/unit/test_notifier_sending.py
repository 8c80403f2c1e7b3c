"""Sending notifications, without a broker: the retry plan (pure), and the send queue,
its outcomes and the sender on a SQLite store, with an injected clock and a scripted
deliverer in place of the channels.

The sender really runs its per-channel pools here: `turn()` claims and dispatches, the
attempts run on the pool threads, and a later `turn()` records them; so the tests turn
until the state they expect is reached (or a deadline passes).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import services.notifier.sender as sender_module
from schemas.events import (
    CloudEvent,
    EventData,
    SlaBreached,
    TicketOpened,
    TicketResolved,
    make_event,
)
from schemas.ticket import Submitter, Ticket
from services.common.store_engine import engine_for, utc
from services.notifier.decisions import Notification
from services.notifier.digest import DigestQueue
from services.notifier.ledger import Ledger, digest_table, outbox_table
from services.notifier.notes import TicketNotes
from services.notifier.oncall import OnCall, parse_oncall
from services.notifier.outcomes import NOTIFICATION_TYPE, Outcomes
from services.notifier.retry_plan import GiveUp, Retry, SendRetry, after_failure
from services.notifier.sender import LEASE, POOL_SIZES, Sender
from services.notifier.sends import SendQueue, SendRow, sends_table
from services.notifier.service import Notifier
from services.runtime.errors import PermanentError, TransientError
from services.runtime.messages import Inbound
from services.runtime.names import Names

T0 = datetime(2026, 11, 27, 9, 58, 2, tzinfo=UTC)
TID = "T-email-0207b44e3d661cc0"
RETRY = SendRetry(
    budget=timedelta(seconds=10), initial=timedelta(seconds=1), longest=timedelta(seconds=4)
)

ONCALL = """\
people:
  - id: kim
    name: Kim
    email: kim@support.example
    chat_webhook: https://chat.example/hooks/kim
    paging_webhook: {url: "https://pager.example/v2/enqueue", routing_key: RK-KIM}
  - id: mira
    name: Mira
    email: mira@support.example
    paging_webhook: {url: "https://pager.example/v2/enqueue", routing_key: RK-MIRA}
schedules:
  primary: {timezone: UTC, rotation: [kim], handoff: {weekday: mon, hour: 9}, start: 2026-01-05}
escalation:
  - {level: 1, schedules: [primary]}
  - {level: 2, people: [mira]}
team_channel: {chat_webhook: "https://chat.example/hooks/team", name: Support}
"""
KIM_OPENED = f"{TID}:opened:1:kim:paging_webhook"  # kim's page: paging, chat, then email
MIRA_OPENED = f"{TID}:opened:2:mira:paging_webhook"  # level 2: paging, then email


# --- the retry plan (pure) -----------------------------------------------------------


def plan(method_index: int, methods: int = 3, **kw: Any) -> Retry | GiveUp:
    args: dict[str, Any] = {
        "method_index": method_index,
        "methods": methods,
        "queued_at": T0,
        "permanent": False,
        "now": T0 + timedelta(seconds=2),
        "retry": RETRY,
        "jitter": 0.0,
    }
    return after_failure(**(args | kw))


def test_after_a_failure_the_next_method_is_tried_at_once() -> None:
    now = T0 + timedelta(seconds=2)
    assert plan(0) == Retry(method_index=1, at=now, first_round_done=False)
    assert plan(1) == Retry(method_index=2, at=now, first_round_done=False)
    assert plan(3) == Retry(method_index=4, at=now, first_round_done=False)  # second round
    # One of several methods refused for good: the others are still tried.
    assert plan(0, permanent=True) == Retry(method_index=1, at=now, first_round_done=False)


def test_after_a_full_round_the_next_starts_after_a_backoff() -> None:
    now = T0 + timedelta(seconds=2)
    first = plan(2)
    assert first == Retry(method_index=3, at=now + timedelta(seconds=1), first_round_done=True)
    second = plan(5)  # the second round failed: twice the initial wait, not a first round
    assert second == Retry(method_index=6, at=now + timedelta(seconds=2), first_round_done=False)
    jittered = plan(2, jitter=1.0)  # up to +50%
    assert isinstance(jittered, Retry) and jittered.at == now + timedelta(seconds=1.5)
    single = plan(0, methods=1)  # one method: every failure ends a round
    assert single == Retry(method_index=1, at=now + timedelta(seconds=1), first_round_done=True)


def test_the_backoff_is_capped_and_never_goes_past_the_budget() -> None:
    now = T0 + timedelta(seconds=2)
    capped = plan(3 * 9 - 1)  # round 9: 1 s * 2**8, capped at 4 s
    assert isinstance(capped, Retry) and capped.at == now + RETRY.longest
    late = T0 + RETRY.budget - timedelta(seconds=1)  # 1 s of budget left, 4 s of backoff
    at_end = plan(3 * 9 - 1, now=late)
    assert isinstance(at_end, Retry) and at_end.at == T0 + RETRY.budget


def test_once_the_budget_is_spent_it_gives_up() -> None:
    assert isinstance(plan(0, now=T0 + RETRY.budget), GiveUp)
    given_up = plan(7, now=T0 + RETRY.budget + timedelta(seconds=1))
    assert isinstance(given_up, GiveUp) and "0:00:10" in given_up.why


def test_a_permanent_failure_of_the_only_method_gives_up_at_once() -> None:
    given_up = plan(0, methods=1, permanent=True, now=T0)
    assert isinstance(given_up, GiveUp) and "for good" in given_up.why


# --- the send queue, outcomes and sender on a SQLite store ---------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@dataclass(frozen=True)
class Call:
    notification: Notification  # as sent: `channel` is the method used

    @property
    def who(self) -> tuple[str, str]:
        return self.notification.person, self.notification.channel


Script = Callable[[Notification], None]


@dataclass
class FakeDeliverer:
    """Deliverer's interface: `send(n, notes, now)` and `oncall`. What `script[(person,
    channel)]` does happens (raise, block); anything unscripted is delivered."""

    oncall: OnCall
    script: dict[tuple[str, str], Script] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, n: Notification, notes: TicketNotes, now: datetime) -> None:
        call = Call(n)
        with self.lock:
            self.calls.append(call)
            action = self.script.get(call.who)
        if action is not None:
            action(n)

    def fail(self, person: str, channel: str, error: Exception) -> None:
        def raise_it(_: Notification) -> None:
            raise error

        self.script[(person, channel)] = raise_it

    def fail_all(self) -> None:
        for person in ("kim", "mira"):
            for channel in ("paging_webhook", "chat_webhook", "email"):
                self.fail(person, channel, TransientError(f"{channel} is down"))

    def block(self, person: str, channel: str, gate: threading.Event) -> None:
        def wait(_: Notification) -> None:
            gate.wait(10)

        self.script[(person, channel)] = wait

    def count(self, person: str, channel: str | None = None) -> int:
        with self.lock:
            return sum(
                c.notification.person == person and channel in (None, c.notification.channel)
                for c in self.calls
            )


class World:
    """One notifier's store with its queue, outcomes, consume-loop handler and senders."""

    def __init__(self, tmp_path: Path, oncall_text: str = ONCALL) -> None:
        self.clock = Clock(T0)
        self.oncall = parse_oncall(oncall_text)
        self.ledger = Ledger(engine_for(str(tmp_path / "notifier.db")))
        self.ledger.migrate()
        self.sends = SendQueue(self.ledger.engine)
        self.digests = DigestQueue(self.ledger.engine)
        self.names = Names("t.")
        self.outcomes = Outcomes(
            self.sends, self.ledger, self.digests, self.oncall, self.names, RETRY
        )
        self.notifier = Notifier(
            self.ledger, self.sends, self.outcomes, self.oncall, self.digests, clock=self.clock
        )
        self._senders: list[Sender] = []

    def sender(self, deliverer: FakeDeliverer | None = None) -> tuple[Sender, FakeDeliverer]:
        fake = deliverer or FakeDeliverer(self.oncall)
        sender = Sender(
            self.sends,
            self.ledger,
            fake,  # type: ignore[arg-type]
            self.outcomes,
            RETRY,
            clock=self.clock,
        )
        self._senders.append(sender)
        return sender, fake

    def handle(self, *events: CloudEvent) -> list[Any]:
        return self.notifier.handle_batch([inbound(e) for e in events])

    def rows(self) -> dict[str, SendRow]:
        with self.ledger.engine.connect() as conn:
            keys = conn.execute(sa.select(sends_table.c.key)).scalars().all()
            found = {k: self.sends.get(conn, k) for k in keys}
        return {k: r for k, r in found.items() if r is not None}

    def leases(self) -> dict[str, datetime | None]:
        with self.ledger.engine.connect() as conn:
            rows = conn.execute(sa.select(sends_table.c.key, sends_table.c.leased_until)).all()
        return {r.key: utc(r.leased_until) for r in rows}

    def outbox(self, routing_key: str | None = None) -> list[Any]:
        with self.ledger.engine.connect() as conn:
            rows = conn.execute(sa.select(outbox_table).order_by(outbox_table.c.id)).all()
        return [r for r in rows if routing_key in (None, r.routing_key)]

    def events(self, routing_key: str) -> list[dict[str, Any]]:
        return [json.loads(r.body)["data"] for r in self.outbox(routing_key)]

    def digest_keys(self) -> list[str]:
        with self.ledger.engine.connect() as conn:
            return list(conn.execute(sa.select(digest_table.c.key)).scalars())

    def settle(self, sender: Sender, timeout: float = 5.0) -> None:
        """Turn (advancing the clock to each retry) until nothing is pending."""
        deadline = time.monotonic() + timeout
        while True:
            sender.turn()
            pending = [r for r in self.rows().values() if r.status == "pending"]
            if not pending:
                return
            leases = self.leases()
            if all(leases[r.key] is None for r in pending):  # nothing in flight: skip ahead
                due = self.sends.next_due(self.clock.now)
                if due is not None and due > self.clock.now:
                    self.clock.now = due
            assert time.monotonic() < deadline, f"still pending: {pending}"
            time.sleep(0.005)

    def crash(self, sender: Sender) -> None:
        """As a kill -9 leaves it: nothing it has in flight is ever recorded or released."""
        self._senders.remove(sender)
        for pool in sender._pools.values():
            pool.shutdown(wait=False)

    def close(self) -> None:
        stop = threading.Event()
        stop.set()
        for sender in self._senders:
            sender.run(stop)  # a stopped sender: waits for its sends, records, releases
        self.ledger.engine.dispose()


def until(sender: Sender, done: Callable[[], bool], timeout: float = 5.0) -> None:
    """Turn the sender until `done()` (attempts run on its pool threads meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        sender.turn()
        if done():
            return
        assert time.monotonic() < deadline, "condition not met within the timeout"
        time.sleep(0.005)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def ticket(tid: str, severity: str = "business_critical") -> Ticket:
    return Ticket(
        ticket_id=tid,
        channel="email",
        portal_id=4411,
        account_name="Acme Corp",
        premium=True,
        submitter=Submitter(role="super_admin", email="ana@acme.example"),
        severity=severity,  # type: ignore[arg-type]
        submitter_marked_critical=severity == "business_critical",
        subject="Nobody can log in",
        text="Since 09:50 nobody on our team can log in.",
        created_at=T0 - timedelta(minutes=31),
    )


def event(data: EventData, tid: str, cause: str) -> CloudEvent:
    return make_event(
        data, service="test", subject=tid, cause=cause, correlation_id=f"c-{tid}", now=T0
    )


def opened(tid: str = TID, severity: str = "business_critical") -> CloudEvent:
    return event(TicketOpened(ticket=ticket(tid, severity)), tid, "opened")


def breached(tid: str = TID, severity: str = "business_critical") -> CloudEvent:
    created = T0 - timedelta(minutes=31)
    data = SlaBreached(
        ticket_id=tid,
        severity=severity,  # type: ignore[arg-type]
        guaranteed=True,
        policy_rule="email-super-admin",
        policy_version="test",
        started_at=created,
        due_at=created + timedelta(minutes=30),
        fired_at=T0,
        lateness_ms=60_000,
    )
    return event(data, tid, "breach")


def resolved(tid: str = TID) -> CloudEvent:
    return event(TicketResolved(ticket_id=tid, at=T0), tid, "resolved")


def inbound(e: CloudEvent) -> Inbound:
    return Inbound(
        body=e.model_dump_json().encode(),
        routing_key=e.routing_key,
        exchange="t.support.events",
        message_id=e.id,
    )


@pytest.mark.parametrize(
    "error", [TransientError("503 from the pager"), PermanentError("404: no such service")]
)
def test_a_failing_method_falls_back_to_the_next(world: World, error: Exception) -> None:
    sender, fake = world.sender()
    fake.fail("kim", "paging_webhook", error)
    assert world.handle(opened()) == [[]]  # queued: no outputs of the consume loop

    until(sender, lambda: world.rows()[KIM_OPENED].status == "sent")
    row = world.rows()[KIM_OPENED]
    assert (row.done_channel, row.attempts) == ("chat_webhook", 2)
    assert [c.who for c in fake.calls] == [("kim", "paging_webhook"), ("kim", "chat_webhook")]
    chat = fake.calls[1].notification
    assert (chat.action, chat.dedup_key) == ("notify", None)  # a chat message, not a page
    [sent] = world.events("escalation.sent")
    assert sent["notification_key"] == KIM_OPENED  # the ledger's key ...
    assert sent["channel"] == "chat_webhook"  # ... naming the channel actually used
    assert world.events("escalation.failed") == []
    assert sender.metrics.retried.labels("paging_webhook")._value.get() == 1
    assert sender.metrics.sent.labels("chat_webhook")._value.get() == 1


def test_every_key_is_sent_once_however_often_its_events_come(world: World) -> None:
    sender, fake = world.sender()
    # The breach three times (a redelivery, a replay), in one batch and in the next.
    assert world.handle(opened(), breached(), breached()) == [[], [], []]
    world.handle(breached())
    expected = {
        KIM_OPENED,
        f"{TID}:breached:1:kim:paging_webhook",
        f"{TID}:breached:2:mira:paging_webhook",
    }
    assert set(world.rows()) == expected
    until(sender, lambda: all(r.status == "sent" for r in world.rows().values()))

    world.handle(opened(), breached())  # redelivered after everything was sent
    for _ in range(20):
        sender.turn()
        time.sleep(0.005)
    assert set(world.rows()) == expected  # nothing new queued ...
    keys = Counter(c.notification.notification_key for c in fake.calls)
    assert keys == Counter(expected)  # ... nothing sent twice
    sent = Counter(e["notification_key"] for e in world.events("escalation.sent"))
    assert sent == Counter(expected)  # one escalation.sent per key


def test_nobody_at_level_1_reached_after_a_round_pages_level_2(world: World) -> None:
    sender, fake = world.sender()
    for channel in ("paging_webhook", "chat_webhook", "email"):
        fake.fail("kim", channel, TransientError(f"{channel} is down"))
    world.handle(opened())  # pages level 1 only

    def level_2_sent() -> bool:
        rows = world.rows()
        if MIRA_OPENED in rows:  # queued in the transaction of kim's last failure
            assert rows[KIM_OPENED].attempts == 3, "level 2 paged before a full round"
            return rows[MIRA_OPENED].status == "sent"
        return False

    until(sender, level_2_sent)
    assert [c.who for c in fake.calls] == [
        ("kim", "paging_webhook"),
        ("kim", "chat_webhook"),
        ("kim", "email"),
        ("mira", "paging_webhook"),
    ]
    kim = world.rows()[KIM_OPENED]
    assert kim.status == "pending"  # kim is still tried: the next round, after a backoff
    leases = world.leases()
    assert leases[KIM_OPENED] is None
    with world.ledger.engine.connect() as conn:
        next_at = conn.execute(
            sa.select(sends_table.c.next_attempt_at).where(sends_table.c.key == KIM_OPENED)
        ).scalar()
    assert T0 + RETRY.initial <= utc(next_at) <= T0 + RETRY.initial * 1.5  # type: ignore[operator]
    notes = world.ledger.notes(TID)
    assert notes is not None and {(p.person, p.level) for p in notes.pages} == {
        ("kim", 1),
        ("mira", 2),
    }  # so an acknowledgement or resolution reaches mira's pager too


def give_up_everything(world: World) -> tuple[Sender, FakeDeliverer]:
    sender, fake = world.sender()
    fake.fail_all()
    world.handle(opened())
    world.settle(sender)
    return sender, fake


def test_given_up_is_dead_failed_dead_lettered_and_told_to_the_team(world: World) -> None:
    _, fake = give_up_everything(world)
    rows = world.rows()
    assert {k: r.status for k, r in rows.items()} == {KIM_OPENED: "dead", MIRA_OPENED: "dead"}
    assert world.clock.now >= T0 + RETRY.budget  # given up at the end of the budget
    assert fake.count("kim") > 3 and fake.count("mira") > 2  # several rounds of each

    failed = {e["notification_key"]: e for e in world.events("escalation.failed")}
    assert set(failed) == {KIM_OPENED, MIRA_OPENED}
    assert failed[KIM_OPENED]["attempts"] == fake.count("kim") == rows[KIM_OPENED].attempts
    assert failed[MIRA_OPENED]["attempts"] == fake.count("mira")
    last_kim = [c for c in fake.calls if c.notification.person == "kim"][-1].notification.channel
    assert failed[KIM_OPENED]["error"].startswith(
        f"kim by {last_kim}: transient: {last_kim} is down"
    )
    assert world.events("escalation.sent") == []

    letters = [r for r in world.outbox() if r.exchange == "notifier.urgent.dlx"]
    assert {json.loads(r.body)["notification"]["person"] for r in letters} == {"kim", "mira"}
    for letter in letters:
        assert letter.routing_key == "t.notifier.urgent.dead"
        assert letter.content_type == NOTIFICATION_TYPE
        headers = json.loads(letter.headers)
        assert headers["x-original-exchange"] == ""
        assert headers["x-original-routing-key"] == "t.notifier.urgent"
        assert headers["x-error-reason"] == "undeliverable"
    assert sorted(world.digest_keys()) == [
        f"{TID}:undelivered.opened:1:team:team_digest",
        f"{TID}:undelivered.opened:2:team:team_digest",
    ]
    assert world.outcomes.metrics.failed.labels("paging_webhook")._value.get() == 2


def test_a_permanent_failure_of_the_only_method_is_given_up_at_once(tmp_path: Path) -> None:
    kim_by_email_only = "\n".join(
        line for line in ONCALL.splitlines() if "hooks/kim" not in line and "RK-KIM" not in line
    )
    world = World(tmp_path, kim_by_email_only)
    try:
        sender, fake = world.sender()
        fake.fail("kim", "email", PermanentError("550 no such mailbox"))
        world.handle(opened())
        key = f"{TID}:opened:1:kim:email"  # kim has email only
        until(sender, lambda: world.rows()[key].status == "dead")
        assert fake.count("kim") == 1 and world.clock.now == T0
        [failed] = world.events("escalation.failed")
        assert failed["attempts"] == 1 and "550" in failed["error"]
        # Nobody at level 1 can be reached: level 2 is paged at once.
        until(sender, lambda: world.rows()[MIRA_OPENED].status == "sent")
    finally:
        world.close()


def replay(world: World, letter: Any) -> list[Any]:
    """The dead letter published back where its headers say (the default exchange)."""
    headers = json.loads(letter.headers)
    return world.notifier.handle_batch(
        [
            Inbound(
                body=letter.body.encode(),
                routing_key=headers["x-original-routing-key"],
                exchange=headers["x-original-exchange"],
                content_type=letter.content_type,
                headers=headers,
                message_id=letter.event_id,
            )
        ]
    )


def kims_letter(world: World) -> Any:
    [letter] = [
        r
        for r in world.outbox()
        if r.exchange == "notifier.urgent.dlx"
        and json.loads(r.body)["notification"]["person"] == "kim"
    ]
    return letter


def test_a_replayed_dead_letter_is_queued_again_and_sent_once(world: World) -> None:
    sender, fake = give_up_everything(world)
    letter = kims_letter(world)
    fake.script.clear()  # the pager is back
    world.clock.advance(minutes=5)
    calls = len(fake.calls)

    assert replay(world, letter) == [[]]
    row = world.rows()[KIM_OPENED]
    assert (row.status, row.attempts, row.queued_at) == ("pending", 0, world.clock.now)
    until(sender, lambda: world.rows()[KIM_OPENED].status == "sent")
    replay(world, letter)  # replayed twice: the second finds it sent
    for _ in range(20):
        sender.turn()
        time.sleep(0.005)
    assert [c.who for c in fake.calls[calls:]] == [("kim", "paging_webhook")]
    [sent] = world.events("escalation.sent")
    assert sent["notification_key"] == KIM_OPENED
    assert world.rows()[MIRA_OPENED].status == "dead"  # only what was replayed


def test_a_replayed_dead_letter_of_a_closed_ticket_is_cancelled(world: World) -> None:
    sender, fake = give_up_everything(world)
    letter = kims_letter(world)
    fake.script.clear()
    world.handle(resolved())  # the ticket was resolved meanwhile
    calls = len(fake.calls)

    assert replay(world, letter) == [[]]
    assert world.rows()[KIM_OPENED].status == "cancelled"
    [cancelled] = world.events("escalation.cancelled")
    assert cancelled["notification_key"] == KIM_OPENED
    assert "closed" in cancelled["why"]
    for _ in range(20):
        sender.turn()
        time.sleep(0.005)
    triggers = [c for c in fake.calls[calls:] if c.notification.action != "resolve"]
    assert triggers == []  # no page for a closed ticket (its resolve follow-ups do go)
    assert world.events("escalation.sent") == [
        e for e in world.events("escalation.sent") if e["reason"].startswith("resolved.")
    ]


def test_a_crashed_senders_send_is_claimed_again_after_its_lease(world: World) -> None:
    gate = threading.Event()
    crashed, stuck = world.sender()
    stuck.block("kim", "paging_webhook", gate)
    world.handle(opened())
    until(crashed, lambda: stuck.count("kim") == 1)  # in flight ...
    world.crash(crashed)  # ... when the process dies: claimed, never recorded
    restarted, fake = world.sender()
    try:
        assert restarted.turn() == 0  # leased to the dead sender
        world.clock.advance(seconds=LEASE.total_seconds() - 1)
        assert restarted.turn() == 0
        world.clock.advance(seconds=2)
        until(restarted, lambda: world.rows()[KIM_OPENED].status == "sent")
        assert [c.who for c in fake.calls] == [("kim", "paging_webhook")]  # the one repeat
    finally:
        gate.set()
    assert [e["notification_key"] for e in world.events("escalation.sent")] == [KIM_OPENED]


def test_a_live_sender_renews_the_leases_of_its_sends(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sender_module, "RENEW_EVERY_S", 0.0)  # renew on every turn
    gate = threading.Event()
    slow, fake = world.sender()
    fake.block("kim", "paging_webhook", gate)
    world.handle(opened())
    until(slow, lambda: fake.count("kim") == 1)
    other, other_fake = world.sender()
    try:
        world.clock.advance(seconds=30)
        slow.turn()  # still sending: the lease now runs to +75 s
        world.clock.advance(seconds=30)
        assert other.turn() == 0
        assert world.leases()[KIM_OPENED] == T0 + timedelta(seconds=30) + LEASE
    finally:
        gate.set()
    until(slow, lambda: world.rows()[KIM_OPENED].status == "sent")
    assert other_fake.calls == []


def test_only_what_a_pool_can_start_is_claimed(world: World) -> None:
    email_pool = POOL_SIZES["email"]
    tickets = [f"T-email-{n:016x}" for n in range(email_pool + 2)]
    gate = threading.Event()
    busy, fake = world.sender()
    fake.block("kim", "email", gate)  # a standard breach notifies by email first
    world.handle(*(breached(t, "standard") for t in tickets))
    until(busy, lambda: fake.count("kim", "email") == email_pool)
    try:
        leased = [k for k, until_ in world.leases().items() if until_ is not None]
        assert len(leased) == email_pool  # the rest went back at once
        other, other_fake = world.sender()
        until(other, lambda: other_fake.count("kim", "email") == 2)  # at once, no lease to wait for
    finally:
        gate.set()
    until(busy, lambda: all(r.status == "sent" for r in world.rows().values()))
    assert Counter(c.notification.ticket_id for c in fake.calls + other_fake.calls) == Counter(
        tickets
    )


def test_a_stopped_sender_records_what_it_sent_and_leaves_nothing_leased(world: World) -> None:
    other_tid = "T-email-00000000000000ff"
    gate = threading.Event()

    def pager(n: Notification) -> None:
        gate.wait(10)
        if n.ticket_id == other_tid:
            raise TransientError("503 from the pager")

    stopping, fake = world.sender()
    fake.script[("kim", "paging_webhook")] = pager
    world.handle(opened(), opened(other_tid))
    stop = threading.Event()
    thread = threading.Thread(target=stopping.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while fake.count("kim") < 2:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        stop.set()
        stopping.wake()
        time.sleep(0.05)
    finally:
        gate.set()  # the sends in flight finish while it stops
        thread.join(10)
    assert not thread.is_alive()
    rows = world.rows()
    assert rows[KIM_OPENED].status == "sent"  # recorded on the way out: never sent again
    failed = rows[f"{other_tid}:opened:1:kim:paging_webhook"]
    assert (failed.status, failed.attempts, failed.method) == ("pending", 1, "chat_webhook")
    assert set(world.leases().values()) == {None}

    successor, next_fake = world.sender()  # the next start: no lease to wait for
    until(successor, lambda: all(r.status == "sent" for r in world.rows().values()))
    assert [c.who for c in next_fake.calls] == [("kim", "chat_webhook")]


def test_the_backoff_never_overflows_however_many_rounds_failed() -> None:
    retry = SendRetry(budget=timedelta(days=30), longest=timedelta(days=2))
    assert retry.backoff(10_000, 1.0) <= timedelta(days=3)

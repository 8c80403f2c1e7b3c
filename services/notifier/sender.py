"""The sender: claims due sends (pages first), sends them concurrently, records results.

Each contact channel has a pool of its own with a bound on concurrent sends, so a slow
or dead endpoint holds only its own channel's threads and never delays a page going out
by another channel; the claim loop never waits on a send. A turn's results are written
in one transaction: the row's new state and the escalation event it causes (to the
outbox), and, where a notification is given up, its dead letter and a team notice.
Nothing of this pins a delivery in the consume loop: inputs were acked when their sends
were queued.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from services.notifier.delivery import Deliverer
from services.notifier.ledger import Ledger
from services.notifier.metrics import NotifierMetrics
from services.notifier.notes import TicketNotes
from services.notifier.outcomes import Outcomes
from services.notifier.retry_plan import SendRetry
from services.notifier.sends import SendQueue, SendRow
from services.runtime.errors import PermanentError, PipelineError, TransientError
from services.runtime.events import now_utc
from services.runtime.outbox import STALL_AFTER_S

log = structlog.get_logger("notifier.sender")

POOL_SIZES = {"paging_webhook": 8, "chat_webhook": 8, "email": 4, "generic_webhook": 4}
# A claimed send's lease: renewed while this sender holds it, released when it stops, so
# a crashed sender's sends are claimed again within this.
LEASE = timedelta(seconds=45)
RENEW_EVERY_S = 15.0
IDLE_S = 0.5  # longest sleep: replicas see each other's new sends this late at most
SEND_ORDER = {"page": 0, "remind": 1, "notify": 2}


@dataclass(frozen=True)
class Attempt:
    row: SendRow
    method: str
    error: PipelineError | None
    at: datetime


class Sender:
    def __init__(
        self,
        sends: SendQueue,
        ledger: Ledger,
        deliverer: Deliverer,
        outcomes: Outcomes,
        retry: SendRetry,
        metrics: NotifierMetrics | None = None,
        clock: Callable[[], datetime] = now_utc,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.sends = sends
        self.ledger = ledger
        self.deliverer = deliverer
        self.outcomes = outcomes
        self.retry = retry
        self.metrics = metrics or NotifierMetrics()
        self.now = clock
        self.on_commit = on_commit
        self._wake = threading.Event()
        self._done: queue.SimpleQueue[Attempt] = queue.SimpleQueue()
        sizes = {**POOL_SIZES, "other": 2}
        self._pools = {
            name: ThreadPoolExecutor(size, thread_name_prefix=f"send-{name}")
            for name, size in sizes.items()
        }
        self._sizes = sizes
        self._busy = dict.fromkeys(sizes, 0)  # sends started and not yet recorded, per pool
        self._claimed: dict[str, SendRow] = {}
        self._unrecorded: list[Attempt] = []
        self._renewed = time.monotonic()
        self.beat = time.monotonic()

    def wake(self) -> None:
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            self.beat = time.monotonic()
            try:
                started = self.turn()
                failures = 0
            except Exception as exc:  # the store is away, or a bug: log, back off, go on
                failures += 1
                delay = min(5.0, 0.1 * 2**failures)
                log.error("notifier.sender.retry", retry_in_s=delay, exc_info=exc)
                stop.wait(delay)
                continue
            # Nothing started (the due sends' pools are full, or nothing is due): wait for
            # a finished attempt or a new send rather than spin on the store.
            self._wake.wait(self._sleep_s() if started else IDLE_S)
            self._wake.clear()
        for pool in self._pools.values():
            pool.shutdown(wait=True)  # only sends already started: nothing waits in a pool
        self._record(self._drain())  # what finished while stopping is recorded, not resent
        self.sends.release(list(self._claimed))

    def turn(self) -> int:
        """Record finished attempts, then claim and dispatch due sends; how many went."""
        self._record(self._drain())
        now = self.now()
        if self._claimed and time.monotonic() - self._renewed > RENEW_EVERY_S:
            self.sends.renew(list(self._claimed), now + LEASE)
            self._renewed = time.monotonic()
        due = self.sends.next_due(now)  # a read: no write lock unless there is work
        if due is None or due > now:
            return 0
        rows: list[SendRow] = []
        for name, busy in self._busy.items():
            free = self._sizes[name] - busy
            if free <= 0:
                continue
            if name == "other":
                rows += self.sends.claim(now, free, LEASE, except_methods=list(POOL_SIZES))
            else:
                rows += self.sends.claim(now, free, LEASE, methods=[name])
        if not rows:
            return 0
        rows.sort(key=lambda r: SEND_ORDER.get(r.notification.kind, 2))
        with self.ledger.engine.connect() as conn:
            notes = self.ledger.notes_in(conn, {r.notification.ticket_id for r in rows})
        for row in rows:
            ticket = notes.get(row.notification.ticket_id)
            why = self.outcomes.no_longer_needed(row, ticket)
            if why is not None:
                self.outcomes.cancel(row, why, now)
                continue
            self._dispatch(row, ticket)
        return len(rows)

    def _dispatch(self, row: SendRow, notes: TicketNotes | None) -> None:
        method = row.method
        n = row.notification.via(method)  # type: ignore[arg-type]
        name = self._pool_of(method)
        pool = self._pools[name]
        self._busy[name] += 1
        self._claimed[row.key] = row
        ticket = notes or TicketNotes(ticket_id=n.ticket_id)

        def attempt() -> None:
            error: PipelineError | None = None
            try:
                self.deliverer.send(n, ticket, self.now())
            except PipelineError as exc:
                error = exc
            except (ArithmeticError, ValueError) as exc:  # unrenderable data: never better
                error = PermanentError(f"{type(exc).__name__}: {exc}", reason="unrenderable")
            except Exception as exc:  # a bug in rendering or a channel: never lose the row
                error = TransientError(f"{type(exc).__name__}: {exc}", reason="unhandled")
            self._done.put(Attempt(row, method, error, self.now()))
            self._wake.set()

        pool.submit(attempt)

    def _pool_of(self, method: str) -> str:
        return method if method in POOL_SIZES else "other"

    def _drain(self) -> list[Attempt]:
        done = []
        while True:
            try:
                done.append(self._done.get_nowait())
            except queue.Empty:
                return done

    def _record(self, attempts: list[Attempt]) -> None:
        attempts = self._unrecorded + attempts
        if not attempts:
            return
        # Kept until committed: a store that fails here gets them again next turn (their
        # leases are still renewed meanwhile), instead of losing them and sending twice.
        self._unrecorded = attempts
        with self.ledger.engine.begin() as conn:
            for a in attempts:
                if a.error is None:
                    self.outcomes.sent(conn, a.row, a.method, a.at)
                else:
                    self._failed(conn, a)
        self._unrecorded = []
        for a in attempts:
            self._busy[self._pool_of(a.method)] -= 1
            self._claimed.pop(a.row.key, None)
            if a.error is None:
                self.metrics.sent.labels(a.method).inc()
        if self.on_commit is not None:
            self.on_commit()

    def _failed(self, conn: object, a: Attempt) -> None:
        assert a.error is not None
        permanent = isinstance(a.error, PermanentError)
        self.metrics.retried.labels(a.method).inc()
        log.warning(
            "notification.attempt_failed",
            key=a.row.key,
            channel=a.method,
            attempt=a.row.attempts + 1,
            error=str(a.error),
        )
        self.outcomes.failed(conn, a.row, a.method, a.error, permanent, a.at, random.random())  # type: ignore[arg-type]

    def _sleep_s(self) -> float:
        next_due = self.sends.next_due(self.now())
        if next_due is None:
            return IDLE_S
        return max(0.0, min(IDLE_S, (next_due - self.now()).total_seconds()))

    def check_alive(self) -> None:
        idle = time.monotonic() - self.beat
        if idle > STALL_AFTER_S:
            raise RuntimeError(f"notifier.sender has not run for {idle:.0f} s")

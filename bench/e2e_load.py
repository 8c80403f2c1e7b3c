"""The load of bench/e2e_latency.py: standard chats, business-critical probes, the plan
of when each goes out, and a publisher with async confirms that keeps to the plan."""

from __future__ import annotations

import collections
import json
import random
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pika
import pika.spec

from services.intake.ids import ticket_id
from services.intake.triage import triage_hints
from services.upstream import pika_parameters

# -- payloads ------------------------------------------------------------------------------
SENTENCES = (
    "Hi, I hope you are well and that this is the right place to ask.",
    "We would like to add two colleagues from the finance department to our portal.",
    "Last week I exported the quarterly report and the totals look slightly different "
    "from the invoice we received.",
    "Could you tell me whether the annual plan includes the extra storage we discussed?",
    "Our marketing team prefers to receive the weekly summary on Monday mornings.",
    "I noticed that the date format in the PDF export follows the American style.",
    "We are planning a small training session for new staff next month.",
    "Is there a way to download the attachments of an old ticket in one archive?",
    "The search results are a bit slow on Friday afternoons, although it is not urgent.",
    "My manager asked for a copy of the signed agreement for our records.",
    "We changed our billing address in March and the last invoice still shows the old one.",
    "A colleague would like to rename a few folders in the shared media library.",
    "Thanks a lot for the quick help with the newsletter template last time.",
    "Please let me know if you need any further details from our side.",
    "We would appreciate a short call sometime next week to review our usage.",
    "The mobile app shows the dashboard in a different order than the browser does.",
)
PROBE_SUBJECT = "Login outage: nobody at Acme can log in"
PROBE_TEXT = (
    "Since this morning nobody in our company can log in to the portal. All users get an "
    "error on the sign-in page, the whole organisation is affected and this is blocking "
    "our launch today. Please call us back as soon as possible."
)


def chat_texts(count: int, rng: random.Random, size: int = 500) -> list[str]:
    """`count` texts of about `size` characters of ordinary prose; none carries a
    business-critical signal (checked with intake's own triage)."""
    texts = []
    for _ in range(count):
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < size:
            parts.append(rng.choice(SENTENCES))
        text = " ".join(parts)
        critical = [h for h in triage_hints(text) if h.points_to == "business_critical"]
        if critical:
            raise RuntimeError(f"a standard chat text has business-critical hints: {critical}")
        texts.append(text)
    if not any(h.points_to == "business_critical" for h in triage_hints(PROBE_SUBJECT, PROBE_TEXT)):
        raise RuntimeError("the probe text carries no business-critical hint")
    return texts


USERS = [(f"u-{100 + i}", f"user{i}@acme.example") for i in range(20)]


def chat_body(i: int, tag: str, text: str, now: str) -> tuple[str, dict[str, Any]]:
    """A standard chat from portal 4411: every 5th from the Super Admin, else a user."""
    user, email = ("u-19", "ana@acme.example") if i % 5 == 0 else USERS[i % len(USERS)]
    conversation = f"{tag}-chat-{i}"
    return conversation, {
        "conversation_id": conversation,
        "portal_id": 4411,
        "started_at": now,
        "visitor": {"user_id": user, "email": email, "name": f"Visitor {user}"},
        "messages": [{"from": "visitor", "at": now, "text": text}],
        "language": "en",
    }


def probe_body(i: int, tag: str, now: str) -> tuple[str, dict[str, Any]]:
    """The Super Admin's support form, marked business-critical: a company-wide login outage."""
    message_id = f"<probe-{i}-{uuid.uuid4().hex[:8]}@{tag}.acme.example>"
    return message_id, {
        "message_id": message_id,
        "portal_id": 4411,
        "from": "Ana Ruiz <ana@acme.example>",
        "subject": PROBE_SUBJECT,
        "text": PROBE_TEXT,
        "html": None,
        "received_at": now,
        "in_reply_to": None,
        "references": [],
        "form": {"business_critical": True, "user_id": "u-19"},
    }


# -- the plan and the publisher ------------------------------------------------------------
Plan = list[tuple[float, bool]]  # (seconds after the start, is a probe), in order


def sustained_plan(rate: float, duration: float, probe_rate: float) -> Plan:
    chats = [(i / rate, False) for i in range(int(rate * duration))]
    probes = [((j + 0.5) / probe_rate, True) for j in range(int(probe_rate * duration))]
    return sorted(chats + probes)


def burst_plan(chats: int, probes: int) -> Plan:
    """All at once; the probes spread evenly over the middle half of the chats."""
    at = {chats // 4 + (k * chats // 2) // max(1, probes - 1) for k in range(probes)}
    plan: Plan = []
    for i in range(chats):
        if i in at:
            plan.append((0.0, True))
        plan.append((0.0, False))
    return plan


class Publisher(threading.Thread):
    """Publishes a plan on a pika SelectConnection with async confirms; notes when each
    probe went out (monotonic) by its ticket id."""

    CHUNK, WINDOW, CONFIRM_WAIT_S = 500, 4000, 30.0

    def __init__(self, url: str, prefix: str, plan: Plan, texts: list[str]) -> None:
        super().__init__(name="publisher", daemon=True)
        self.url, self.plan, self.texts = url, plan, texts
        self.exchange = f"{prefix}support.inbound"
        self.tag = prefix.rstrip(".")
        self.idx = self.seq = self.acked = self.nacked = 0
        self.channel: Any = None
        self.pending: collections.deque[int] = collections.deque()
        self.early: set[int] = set()
        self.probes: dict[str, float] = {}
        self.t0 = self.t_first = self.t_last = 0.0
        self.max_lag = 0.0
        self.finished, self.halt = threading.Event(), threading.Event()
        self.error: BaseException | None = None
        self.conn: pika.SelectConnection | None = None

    def run(self) -> None:
        try:
            self.conn = pika.SelectConnection(
                pika_parameters(self.url),
                on_open_callback=lambda c: c.channel(on_open_callback=self._on_channel),
                on_open_error_callback=lambda _c, exc: self._fail(exc),
                on_close_callback=self._on_closed,
            )
            self.conn.ioloop.start()
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            self.finished.set()

    def _on_closed(self, conn: Any, reason: BaseException) -> None:
        if self.idx < len(self.plan) and not self.halt.is_set():
            self.error = reason  # the broker or the network closed it under us
        conn.ioloop.stop()

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        assert self.conn is not None
        self.conn.ioloop.stop()

    def abort(self) -> None:
        self.halt.set()
        if self.conn is not None and not self.finished.is_set():
            self.conn.ioloop.add_callback_threadsafe(self._close)
        self.join(10)

    def _close(self) -> None:
        if self.conn is not None and self.conn.is_open:
            self.conn.close()

    def _on_channel(self, channel: Any) -> None:
        self.channel = channel
        channel.confirm_delivery(self._on_confirm, callback=lambda _frame: self._start())

    def _start(self) -> None:
        self.t0 = time.monotonic()
        self._tick()

    def _tick(self) -> None:
        assert self.conn is not None
        now = time.monotonic() - self.t0
        budget = self.CHUNK
        while (
            not self.halt.is_set()
            and self.idx < len(self.plan)
            and self.plan[self.idx][0] <= now
            and budget > 0
            and self.outstanding < self.WINDOW
        ):
            at, probe = self.plan[self.idx]
            self._publish(self.idx, probe)
            self.max_lag = max(self.max_lag, now - at)
            self.idx += 1
            budget -= 1
        done = self.idx >= len(self.plan)
        waited = time.monotonic() - self.t_last
        if self.halt.is_set() or (done and (not self.outstanding or waited > self.CONFIRM_WAIT_S)):
            self._close()
        else:
            self.conn.ioloop.call_later(0.0 if budget == 0 else 0.01, self._tick)

    @property
    def sent(self) -> int:
        return self.idx

    @property
    def outstanding(self) -> int:
        return len(self.pending) - len(self.early)

    def _publish(self, i: int, probe: bool) -> None:
        now = datetime.now(UTC).isoformat()
        if probe:
            message_id, body = probe_body(i, self.tag, now)
        else:
            message_id, body = chat_body(i, self.tag, self.texts[i % len(self.texts)], now)
        props = pika.BasicProperties(
            content_type="application/json", delivery_mode=2, message_id=message_id
        )
        raw = json.dumps(body).encode()
        t = time.monotonic()
        self.channel.basic_publish(
            self.exchange, "inbound.email" if probe else "inbound.chat", raw, props
        )
        if probe:  # the ticket id intake derives from the Message-ID (services/intake/ids.py)
            self.probes[ticket_id("email", message_id)] = t
        self.t_first = self.t_first or t
        self.t_last = t
        self.seq += 1  # the channel's delivery tag of this publish
        self.pending.append(self.seq)

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        ack = isinstance(method, pika.spec.Basic.Ack)
        counted = 0
        if method.multiple:
            while self.pending and self.pending[0] <= method.delivery_tag:
                tag = self.pending.popleft()
                if tag in self.early:
                    self.early.discard(tag)
                else:
                    counted += 1
        elif (
            self.pending
            and self.pending[0] <= method.delivery_tag
            and method.delivery_tag not in self.early
        ):
            self.early.add(method.delivery_tag)
            counted = 1
        while self.pending and self.pending[0] in self.early:
            self.early.discard(self.pending.popleft())
        if ack:
            self.acked += counted
        else:
            self.nacked += counted

"""`premium-support demo`: the pipeline in one process on kombu's in-memory transport.

No broker to install: intake runs on `memory://`, a scenario of inbound requests is
published, and the canonical events and dead letters are shown as they come.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kombu import Connection, Exchange, Queue
from rich.console import Console
from rich.table import Table

from services.intake.main import IntakeSettings, bootstrap
from services.runtime.app import ServiceRunner, declare_topology
from services.runtime.logging import mask_text
from services.runtime.metrics import RuntimeMetrics
from services.runtime.names import Names

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@dataclass(frozen=True)
class Step:
    channel: str
    body: bytes
    content_type: str = "application/json"
    note: str = ""


def default_scenario() -> list[Step]:
    inbound = EXAMPLES / "inbound"
    return [
        Step("chat", (inbound / "chat.json").read_bytes(), note="chat from a Super Admin"),
        Step("email", (inbound / "email.json").read_bytes(), note="critical email form"),
        Step("email", (inbound / "email-raw.eml").read_bytes(), "message/rfc822", "raw MIME"),
        Step("phone", (inbound / "phone.json").read_bytes(), note="IVR callback request"),
        Step("helpdesk", (inbound / "helpdesk-acknowledged.json").read_bytes(), note="on-call ack"),
        Step("helpdesk", (inbound / "helpdesk-first-response.json").read_bytes(), note="agent"),
        Step("chat", b'{"conversation_id": "c-9", ', note="broken JSON -> dead letter"),
    ]


def _describe(payload: dict[str, Any]) -> tuple[str, str]:
    data = payload.get("data", {})
    ticket = data.get("ticket")
    if ticket:
        who = ticket["submitter"]
        hints = ", ".join(h["signal"] for h in ticket["triage_hints"]) or "-"
        return f"{who['role']} {mask_text(who.get('email') or who.get('phone') or '')}", hints
    return "", ", ".join(f"{k}={v}" for k, v in data.items() if k in ("agent", "by", "text"))


def run_demo(console: Console, scenario: list[Step] | None = None, timeout_s: float = 15) -> int:
    steps = scenario or default_scenario()
    settings = IntakeSettings(
        AMQP_URL="memory://", AMQP_PREFIX="demo.", ACCOUNTS_FILE=EXAMPLES / "accounts.yaml"
    )
    names = Names(settings.amqp_prefix)
    declare_topology(settings)
    watch = Queue("demo.watch", Exchange(names.events_exchange, "topic"), routing_key="#")
    runner = ServiceRunner(bootstrap(settings), settings, RuntimeMetrics.create())
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    with Connection("memory://") as conn:
        watch(conn.default_channel).declare()
        producer = conn.Producer()
        for step in steps:
            producer.publish(
                step.body,
                exchange=names.inbound_exchange,
                routing_key=f"inbound.{step.channel}",
                content_type=step.content_type,
                content_encoding="binary",
            )
            console.print(f"[dim]published[/] inbound.{step.channel}: {step.note}")
        events, dead = _collect(conn, watch, names, len(steps), timeout_s)
    runner.stop.set()
    thread.join(timeout=10)
    _show(console, events, dead)
    return 0 if len(events) + len(dead) >= len(steps) else 1


def _collect(
    conn: Connection, watch: Queue, names: Names, expected: int, timeout_s: float
) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]:
    """Read events and dead letters as raw messages (a dead letter's body is what was
    sent, valid or not)."""
    events: list[tuple[str, dict[str, Any]]] = []
    dead: list[dict[str, Any]] = []
    channel = conn.default_channel
    deadline = time.monotonic() + timeout_s
    while len(events) + len(dead) < expected and time.monotonic() < deadline:
        message = channel.basic_get(watch.name, no_ack=True)
        if message is not None:
            events.append((message.delivery_info["routing_key"], json.loads(message.body)))
        letter = channel.basic_get(names.dead_letter_queue("intake"), no_ack=True)
        if letter is not None:
            dead.append(dict(letter.headers))
        if message is None and letter is None:
            time.sleep(0.05)
    return events, dead


def _show(
    console: Console, events: list[tuple[str, dict[str, Any]]], dead: list[dict[str, Any]]
) -> None:
    table = Table(title="canonical events on support.events")
    for column in ("routing key", "ticket", "submitter", "hints / details"):
        table.add_column(column, overflow="fold")
    for routing_key, payload in events:
        who, hints = _describe(payload)
        table.add_row(routing_key, payload["subject"], who, hints)
    console.print(table)
    for letter in dead:
        console.print(f"[red]dead letter[/] {letter['x-error']}")
    console.print(f"{len(events)} events, {len(dead)} dead letters; nothing lost.")

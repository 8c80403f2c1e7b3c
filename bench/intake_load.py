"""The inbound load of bench/intake_throughput.py and what intake makes of it.

Chat, email-form and phone requests in the shares `SHARES`, each carrying at least 500
characters of ordinary prose (bench.e2e_load's sentences, checked against intake's own
triage), from the submitters of examples/accounts.yaml (Super Admins, known users,
unknown people, a portal without Premium Support). A quarter of the emails reply in a
thread opened earlier in the load (a `ticket.updated` for that ticket, so ordering per
ticket can be checked); a few emails and calls are marked business-critical and read
like an outage. The events intake publishes for each message are computed here with
intake's own handlers, so the baseline can publish exactly those.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pika

from bench.e2e_load import PROBE_TEXT, SENTENCES, chat_texts
from services.intake.main import IntakeSettings, bootstrap
from services.runtime.messages import Inbound, Outgoing

ROOT = Path(__file__).resolve().parent.parent
ACCOUNTS = ROOT / "examples" / "accounts.yaml"
SHARES = {"chat": 0.45, "email": 0.40, "phone": 0.15}
REPLY_SHARE = 0.25  # of the emails
CRITICAL_SHARE = 0.02  # of the new emails and of the calls
TEXT_CHARS = 500
# (portal, user id, email, phone as the caller's system sends it, name, weight)
SUBMITTERS = (
    (4411, "u-19", "ana@acme.example", "+31 20 555 0134", "Ana Ruiz", 2),
    (4411, "u-20", "bo@acme.example", None, "Bo Jansen", 4),
    (5522, "g-1", "hank@globex.example", "+1 212 555 0147", "Hank Scorpio", 2),
    (5522, "g-2", "marge@globex.example", None, "Marge Gunderson", 4),
    (6633, "i-1", "peter@initech.example", None, "Peter Gibbons", 1),
    (4411, None, "new.colleague@acme.example", "+31 20 555 0199", "Sam de Vries", 2),
)
SUBJECTS = (
    "Question about our invoice",
    "Adding colleagues to the portal",
    "Export format of the quarterly report",
    "Storage in the annual plan",
    "Folder names in the media library",
    "Dashboard order in the mobile app",
)


@dataclass(frozen=True)
class Message:
    seq: int
    routing_key: str
    body: bytes
    message_id: str  # the AMQP message id: intake's correlation id for what it publishes


def seq_of(correlation_id: str | None) -> int:
    """The load's sequence number back from a correlation id (`<tag>-<seq>`)."""
    return int(str(correlation_id).rsplit("-", 1)[1])


def build(count: int, tag: str, seed: int = 11) -> list[Message]:
    rng = random.Random(seed)
    texts = chat_texts(min(count, 1000), rng, TEXT_CHARS)
    people = [s[:5] for s in SUBMITTERS for _ in range(s[5])]
    now = datetime.now(UTC)
    roots: list[str] = []
    out = []
    for seq in range(count):
        channel = rng.choices(list(SHARES), weights=list(SHARES.values()))[0]
        person = rng.choice(people)
        text = texts[seq % len(texts)]
        at = (now - timedelta(seconds=count - seq)).isoformat()
        critical = channel != "chat" and rng.random() < CRITICAL_SHARE
        if critical:
            text = _critical_text(rng)
        if channel == "chat":
            body = _chat(seq, tag, person, text, at)
        elif channel == "email":
            reply_to = rng.choice(roots[-3000:]) if roots and rng.random() < REPLY_SHARE else None
            body = _email(seq, tag, person, text, at, reply_to, critical and not reply_to)
            if reply_to is None:
                roots.append(body["message_id"])
        else:
            body = _phone(seq, tag, person, text, at, critical, rng)
        out.append(Message(seq, f"inbound.{channel}", json.dumps(body).encode(), f"{tag}-{seq}"))
    return out


def _critical_text(rng: random.Random) -> str:
    parts = [PROBE_TEXT]
    while sum(len(p) + 1 for p in parts) < TEXT_CHARS:
        parts.append(rng.choice(SENTENCES))
    return " ".join(parts)


def _chat(seq: int, tag: str, person: tuple[Any, ...], text: str, at: str) -> dict[str, Any]:
    portal, user, email, _phone, name = person
    return {
        "conversation_id": f"{tag}-chat-{seq}",
        "portal_id": portal,
        "started_at": at,
        "visitor": {"user_id": user, "email": email, "name": name},
        "messages": [{"from": "visitor", "at": at, "text": text}],
        "language": "en",
    }


def _email(
    seq: int,
    tag: str,
    person: tuple[Any, ...],
    text: str,
    at: str,
    reply_to: str | None,
    critical: bool,
) -> dict[str, Any]:
    portal, user, email, _phone, name = person
    subject = SUBJECTS[seq % len(SUBJECTS)]
    return {
        "message_id": f"<{tag}-{seq}@mail.example>",
        "portal_id": portal,
        "from": f"{name} <{email}>",
        "subject": f"Re: {subject}" if reply_to else subject,
        "text": text,
        "html": None,
        "received_at": at,
        "in_reply_to": reply_to,
        "references": [reply_to] if reply_to else [],
        "form": {"business_critical": critical, "user_id": user},
    }


def _phone(
    seq: int,
    tag: str,
    person: tuple[Any, ...],
    text: str,
    at: str,
    critical: bool,
    rng: random.Random,
) -> dict[str, Any]:
    portal, user, _email, phone, _name = person
    return {
        "call_id": f"CA{tag}{seq}",
        "portal_id": portal,
        "kind": "callback_request" if rng.random() < 0.7 else "inbound_call",
        "caller_number": phone or "+31 20 555 0100",
        "caller_user_id": user,
        "requested_at": at,
        "ivr": {"business_critical": critical, "language": "en"},
        "transcript": text,
    }


def intake_outputs(messages: list[Message], prefix: str) -> dict[str, list[Outgoing]]:
    """What intake publishes for each message (by message id), from its own handlers."""
    routes = bootstrap(IntakeSettings(ACCOUNTS_FILE=ACCOUNTS, AMQP_URL="memory://")).handlers
    outputs = {}
    for m in messages:
        inbound = Inbound(
            m.body, m.routing_key, f"{prefix}support.inbound", "application/json", {}, m.message_id
        )
        outputs[m.message_id] = list(routes[m.routing_key](inbound))
    return outputs


def properties(out: Outgoing) -> pika.BasicProperties:
    """The properties intake's publisher gives `out` (services.runtime.publisher)."""
    return pika.BasicProperties(
        content_type=out.content_type,
        delivery_mode=2,
        message_id=out.message_id,
        correlation_id=out.correlation_id,
        headers=out.headers,
    )


def write_outputs(path: Path, outputs: dict[str, list[Outgoing]]) -> None:
    """One JSON line per input for the baseline process: its id and its outputs."""
    with path.open("w") as f:
        for message_id, outs in outputs.items():
            rows = [
                [o.routing_key, o.body.decode(), o.message_id, o.correlation_id, o.headers]
                for o in outs
            ]
            f.write(json.dumps({"id": message_id, "out": rows}) + "\n")


def inbound_items(messages: list[Message]) -> list[tuple[str, bytes, pika.BasicProperties]]:
    """The load as an upstream system publishes it (persistent, with its message id)."""
    return [
        (
            m.routing_key,
            m.body,
            pika.BasicProperties(
                content_type="application/json", delivery_mode=2, message_id=m.message_id
            ),
        )
        for m in messages
    ]

"""PagerDuty's v3 webhook: its signature, and the ticket an `incident.acknowledged` names.

PagerDuty signs the raw body with HMAC-SHA256 and sends `X-PagerDuty-Signature:
v1=<hex>` (several comma-separated while a secret is being rotated: any one matching is
enough). The incident's `incident_key` is the dedup key the notifier triggered it with,
`<ticket id>:<reason>` (services/notifier/render.py `render_pagerduty`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any

from schemas.inbound import TICKET_ID_PATTERN

ACKNOWLEDGED = "incident.acknowledged"
TICKET_ID = re.compile(TICKET_ID_PATTERN)
BY_MAX = 120


@dataclass(frozen=True)
class PagerDutyAck:
    event_id: str
    ticket_id: str
    by: str


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    offered = [part.strip() for part in (header or "").split(",")]
    return any(
        hmac.compare_digest(expected, sig.removeprefix("v1="))
        for sig in offered
        if sig.startswith("v1=")
    )


def ticket_of(dedup_key: str) -> str | None:
    ticket = dedup_key.partition(":")[0]
    return ticket if TICKET_ID.match(ticket) else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def parse(body: bytes) -> PagerDutyAck | None:
    """The acknowledgement in a (verified) webhook body; None for any other event, or
    an incident that is not one of ours. Raises ValueError when the body is no JSON."""
    event = json.loads(body).get("event")
    if not isinstance(event, dict) or event.get("event_type") != ACKNOWLEDGED:
        return None
    data = _object(event.get("data"))
    ticket = ticket_of(_text(data.get("incident_key")))
    event_id = _text(event.get("id"))
    if ticket is None or not event_id:
        return None
    agent = _object(event.get("agent"))
    by = " ".join(_text(agent.get("summary")).split())[:BY_MAX] or "pagerduty"
    return PagerDutyAck(event_id[:64], ticket, f"pagerduty:{by}")

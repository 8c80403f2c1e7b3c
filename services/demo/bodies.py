"""A scenario step's message body, with its timestamps moved to "now minus `created`".

The example bodies carry fixed timestamps; the demo needs them relative to the moment it
runs so that clocks warn and breach within seconds. Which fields hold the customer's
create time is fixed by the inbound contract (DESIGN.md section 4), so they are listed
here per channel rather than in the scenario file.
"""

from __future__ import annotations

import email.utils
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from services.demo.scenario import Step

# channel -> top-level JSON fields holding the create time
TIME_FIELDS = {
    "chat": ("started_at",),
    "email": ("received_at",),
    "phone": ("requested_at",),
    "helpdesk": ("at",),
}
_DATE_HEADER = re.compile(rb"^Date:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*", re.MULTILINE | re.IGNORECASE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")


def raw_body(step: Step) -> bytes:
    if step.file is not None:
        return step.file.read_bytes()
    if isinstance(step.body, dict):
        return json.dumps(step.body).encode()
    return (step.body or "").encode()


def prepare(step: Step, now: datetime, ticket_id: str | None = None) -> bytes:
    """The bytes to publish for `step` at `now`; `ticket_id` fills a helpdesk update's."""
    body = raw_body(step)
    created = now - timedelta(seconds=step.created)
    if step.media_type.startswith("message/rfc822"):
        return _mime_date(body, created)
    try:
        data = json.loads(body)
    except ValueError:
        return body  # a step may send broken JSON on purpose (it is dead-lettered)
    if not isinstance(data, dict):
        return body
    return json.dumps(_json_times(step, data, created, ticket_id)).encode()


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _json_times(
    step: Step, data: dict[str, Any], created: datetime, ticket_id: str | None
) -> dict[str, Any]:
    for name in TIME_FIELDS[step.channel]:
        data[name] = _stamp(created)
    if step.channel == "chat" and isinstance(data.get("messages"), list):
        # Every visitor message at the create time: one snapshot, one ticket.
        for message in data["messages"]:
            if isinstance(message, dict):
                message["at"] = _stamp(created)
    if ticket_id is not None:
        data["ticket_id"] = ticket_id
    return data


def _mime_date(body: bytes, created: datetime) -> bytes:
    """Replace (or add) the Date header; only in the header block, never in the text."""
    header = b"Date: " + email.utils.format_datetime(created.astimezone(UTC)).encode()
    end = _HEADER_END.search(body)
    head, rest = (body[: end.start()], body[end.start() :]) if end else (body, b"")
    if _DATE_HEADER.search(head):
        return _DATE_HEADER.sub(lambda _: header, head, count=1) + rest
    return header + b"\r\n" + body

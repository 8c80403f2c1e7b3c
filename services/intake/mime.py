"""Parse a raw inbound email (message/rfc822) into the fields intake needs.

Everything that cannot be understood as an email raises
`PermanentError(reason="invalid_mime")`, a `Date` header whose year is outside 2000-2100
(even one no datetime can hold, like 10000) `PermanentError(reason="invalid_timestamp")`;
no other exception escapes `parse_mime`. An unreadable `Date` is no date (None).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email import policy
from email.message import Message
from email.parser import BytesParser
from email.utils import parsedate_tz

from schemas.inbound import INVALID_TIMESTAMP, MAX_YEAR, MIN_YEAR
from schemas.ticket import Attachment
from services.intake.html_text import html_to_text
from services.intake.mime_parts import (
    Body,
    ForwardedMessage,
    addresses,
    header,
    invalid,
    msg_ids,
    raw_headers,
    sender,
    to_datetime,
    walk,
)
from services.runtime.errors import PermanentError

__all__ = ["ForwardedMessage", "ParsedEmail", "parse_mime"]

_TRUE = frozenset({"yes", "true", "1"})
_PLUS_PORTAL = re.compile(r"[^@+\s]+\+([0-9]{1,18})@")
_FORWARD_MARKER = re.compile(
    r"^[ >]*(?:-{3,} ?(?:Forwarded message|Forwarded Message|Weitergeleitete Nachricht"
    r"|Doorgestuurd bericht|Message transféré) ?-{3,}|Begin forwarded message:"
    r"|Anfang der weitergeleiteten Nachricht:)[ \t]*$",
    re.MULTILINE | re.IGNORECASE,
)
# Outlook puts the same block above a quoted reply, so it only marks a forward
# when the subject says so.
_OUTLOOK_MARKER = re.compile(
    r"^[ >]*(?:-{3,} ?(?:Original Message|Ursprüngliche Nachricht) ?-{3,}[ \t]*$"
    r"|\*?(?:From|Von|Van|De):\*? .+\n[ >]*\*?(?:Sent|Gesendet|Verzonden|Envoyé):)",
    re.MULTILINE | re.IGNORECASE,
)
_FORWARD_SUBJECT = re.compile(r"^\s*(?:fwd?|wg|tr|rv|enc|doorst)\s*:", re.IGNORECASE)
_FIELDS = {
    "from": "from", "von": "from", "van": "from", "de": "from",
    "subject": "subject", "betreff": "subject", "onderwerp": "subject", "objet": "subject",
    "date": "date", "sent": "date", "datum": "date", "gesendet": "date", "verzonden": "date",
}  # fmt: skip
_FIELD_LINE = re.compile(r"^[ >]*\*?([A-Za-z]+)\*?:\*?[ \t]*(.*)$")
_ZONES = {"UTC": 0, "GMT": 0, "Z": 0, "WET": 0, "BST": 1, "CET": 1, "CEST": 2, "EET": 2,
          "EEST": 3, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "PST": -8, "PDT": -7}  # fmt: skip
_NUMERIC_ZONE = re.compile(r" (?:GMT|UTC)?\s*([+-])(\d{1,2}):?(\d{2})?$")
_NAMED_ZONE = re.compile(r" ([A-Z]{1,4})$")
_DATE_FORMATS = [
    f"{d} {t}"
    for d, t in itertools.product(
        ["%B %d %Y", "%b %d %Y", "%d %B %Y", "%d %b %Y", "%Y-%m-%d", "%d.%m.%Y", "%m/%d/%Y"],
        ["%I:%M %p", "%I:%M:%S %p", "%H:%M", "%H:%M:%S"],
    )
]


@dataclass(frozen=True)
class ParsedEmail:
    message_id: str
    in_reply_to: str | None
    references: list[str]
    from_name: str | None
    from_address: str
    recipients: list[str]
    subject: str
    text: str
    html: str | None
    date: datetime | None
    portal_id: int | None
    business_critical: bool
    attachments: list[Attachment]
    forwarded: ForwardedMessage | None
    language: str | None


def parse_mime(raw: bytes) -> ParsedEmail:
    """Parse a raw RFC 5322 / MIME message. Raises PermanentError(reason="invalid_mime")."""
    if not isinstance(raw, bytes | bytearray):
        raise invalid(f"expected bytes, got {type(raw).__name__}")
    if not raw.strip():
        raise invalid("empty message")
    try:
        return _parse(bytes(raw))
    except PermanentError:
        raise
    except Exception as exc:  # the email package has many ways to fail; none may escape
        raise invalid(f"unreadable MIME message ({type(exc).__name__}: {exc})") from exc


def _parse(raw: bytes) -> ParsedEmail:
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    if not msg.keys():
        raise invalid("not a MIME message: no headers")
    from_name, from_address = sender(msg)
    body = Body()
    walk(msg, body)
    text = "\n\n".join(t.strip("\n") for t in body.texts if t.strip()).strip()
    html = "\n".join(body.htmls) if body.htmls else None
    if not text and html:
        text = html_to_text(html)
    subject = header(msg, "Subject") or ""
    by_header = {h: addresses(raw_headers(msg, h)) for h in ("To", "Cc", "Delivered-To")}
    recipients = list(dict.fromkeys(a for pairs in by_header.values() for _, a in pairs))
    dates = raw_headers(msg, "Date")
    return ParsedEmail(
        message_id=_message_id(msg, raw),
        in_reply_to=next(iter(msg_ids(" ".join(raw_headers(msg, "In-Reply-To")[:1]))), None),
        references=msg_ids(" ".join(raw_headers(msg, "References"))),
        from_name=from_name,
        from_address=from_address,
        recipients=recipients,
        subject=subject,
        text=text,
        html=html,
        date=_sent_at(dates[0]) if dates else None,
        portal_id=_portal_id(msg, [a for _, a in by_header["Delivered-To"]] + recipients),
        business_critical=(header(msg, "X-Business-Critical") or "").lower() in _TRUE,
        attachments=body.attachments,
        forwarded=body.forwarded or _inline_forward(text, subject),
        language=header(msg, "Content-Language") or body.language,
    )


def _sent_at(value: str) -> datetime | None:
    """The Date header: the email's create time. Its year is checked on the parsed
    fields, before a datetime exists: year 10000 is implausible, not unreadable."""
    fields = parsedate_tz(value)
    if fields is not None and not MIN_YEAR <= fields[0] <= MAX_YEAR:
        raise PermanentError(
            f"Date header {value!r}: year {fields[0]} is outside {MIN_YEAR}-{MAX_YEAR}",
            reason=INVALID_TIMESTAMP,
        )
    return to_datetime(value)


def _message_id(msg: Message, raw: bytes) -> str:
    ids = msg_ids(" ".join(raw_headers(msg, "Message-ID")[:1]))
    return ids[0] if ids else f"<sha256-{hashlib.sha256(raw).hexdigest()[:32]}@intake.invalid>"


def _portal_id(msg: Message, recipients: list[str]) -> int | None:
    value = (header(msg, "X-Portal-Id") or "").strip()
    if re.fullmatch(r"[0-9]{1,18}", value) and int(value) > 0:
        return int(value)
    for address in recipients:
        match = _PLUS_PORTAL.match(address)
        if match and int(match.group(1)) > 0:
            return int(match.group(1))
    return None


def _inline_forward(text: str, subject: str) -> ForwardedMessage | None:
    match = _FORWARD_MARKER.search(text)
    if match is None and _FORWARD_SUBJECT.match(subject):
        match = _OUTLOOK_MARKER.search(text)
    if match is None:
        return None
    found: dict[str, str] = {}
    for line in text[match.start() :].split("\n")[:16]:
        field = _FIELD_LINE.match(line)
        if field and _FIELDS.get(field.group(1).lower()) and field.group(2).strip():
            found.setdefault(_FIELDS[field.group(1).lower()], " ".join(field.group(2).split()))
        elif found and not line.strip(" >"):
            break  # the blank line after the header block
    sender_match = re.search(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+", found.get("from", ""))
    return ForwardedMessage(
        from_address=sender_match.group(0).lower() if sender_match else None,
        subject=found.get("subject"),
        date=_loose_date(found.get("date")),
    )


def _loose_date(value: str | None) -> datetime | None:
    """Dates as mail clients print them in a forward; zone-less ones are read as UTC."""
    if not value:
        return None
    if (strict := to_datetime(value)) is not None:
        return strict
    value = " ".join(re.sub(r",|\bat\b", " ", value).split())
    value = re.sub(r"^[A-Za-z]+day\.? |^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)\.? ", "", value)
    offset = timedelta(0)
    if numeric := _NUMERIC_ZONE.search(value):
        sign = -1 if numeric.group(1) == "-" else 1
        hours, minutes = int(numeric.group(2)), int(numeric.group(3) or 0)
        offset, value = sign * timedelta(hours=hours, minutes=minutes), value[: numeric.start()]
    elif (named := _NAMED_ZONE.search(value)) and named.group(1) in _ZONES:
        offset, value = timedelta(hours=_ZONES[named.group(1)]), value[: named.start()]
    try:
        zone = timezone(offset)
    except ValueError:
        return None
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=zone)
        except ValueError:
            continue
    return None

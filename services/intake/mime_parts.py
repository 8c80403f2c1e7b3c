"""Helpers for `mime`: header access, body decoding, attachments and forwarded mail."""

from __future__ import annotations

import codecs
import contextlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy as email_policy
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

from schemas.ticket import Attachment
from services.runtime.errors import PermanentError

MAX_DEPTH = 40
_MSG_ID = re.compile(r"<[^<>]*>")
_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
_SIGNATURES = frozenset(
    {"application/pkcs7-signature", "application/x-pkcs7-signature", "application/pgp-signature"}
)
_SERIALIZE = email_policy.default.clone(max_line_length=None, linesep="\r\n")


@dataclass(frozen=True)
class ForwardedMessage:
    from_address: str | None
    subject: str | None
    date: datetime | None


@dataclass
class Body:
    """What a walk over the MIME tree collects."""

    texts: list[str] = field(default_factory=list)
    htmls: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    forwarded: ForwardedMessage | None = None
    language: str | None = None


def invalid(detail: str) -> PermanentError:
    return PermanentError(detail, reason="invalid_mime")


def clean(value: str) -> str:
    """Undo the surrogate escapes the parser uses for raw 8-bit header bytes."""
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def raw_headers(msg: Message, name: str) -> list[str]:
    """Every value of a header as sent (unfolded, encoded words left alone)."""
    return [" ".join(v.split()) for k, v in msg.raw_items() if k.lower() == name.lower()]


def header(msg: Message, name: str) -> str | None:
    """A header decoded (RFC 2047) with its whitespace normalised; None when absent."""
    raws = raw_headers(msg, name)
    if not raws:
        return None
    try:
        value = str(msg[name])
    except Exception:  # the header registry chokes on some malformed values
        try:
            value = str(make_header(decode_header(raws[0])))
        except Exception:
            value = raws[0]
    return " ".join(clean(value).split())


def msg_ids(value: str) -> list[str]:
    value = clean(value)
    found = ["".join(m.split()) for m in _MSG_ID.findall(value)]
    ids = [m for m in found if len(m) > 2]
    if not ids and value.strip() and len(value.split()) == 1:
        ids = [value.strip()]  # some clients omit the angle brackets
    return list(dict.fromkeys(ids))


def addresses(values: list[str]) -> list[tuple[str, str]]:
    """(display name, lower-cased address) pairs that hold a real address."""
    pairs = []
    for name, addr in getaddresses([clean(v) for v in values]):
        addr = addr.strip().lower()
        if "@" in addr.strip("@"):
            pairs.append((name, addr))
    return pairs


def sender(msg: Message) -> tuple[str | None, str]:
    raws = raw_headers(msg, "From")
    if not raws:
        raise invalid("no From header")
    if not raws[0]:
        raise invalid("From header is empty")
    try:
        found = [(a.display_name, a.addr_spec) for a in getattr(msg["From"], "addresses", ())]
    except Exception:
        found = []
    found = found or [parseaddr(raws[0])]
    for name, addr in found:
        addr = clean(addr).strip().lower()
        local, _, domain = addr.rpartition("@")
        if local and domain and " " not in addr:
            return (decode_words(name) or None), addr
    raise invalid(f"From header has no address: {raws[0][:200]!r}")


def decode_words(value: str) -> str:
    with contextlib.suppress(Exception):
        value = str(make_header(decode_header(value)))
    return " ".join(clean(value).split())


def to_datetime(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except Exception:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --- bodies ---------------------------------------------------------------------------


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode text in its declared charset, falling back when it is unknown or a lie."""
    name = (charset or "").strip().strip("\"'").lower()
    try:
        name = codecs.lookup(name).name if name else ""
    except (LookupError, ValueError):
        name = ""
    if name in ("", "ascii", "latin-1", "iso8859-1"):
        # Undeclared or US-ASCII/Latin-1 labels routinely carry UTF-8 or Windows-1252.
        for guess in ("utf-8", "cp1252"):
            try:
                return data.decode(guess)
            except UnicodeDecodeError:
                continue
        return data.decode("latin-1")
    try:
        return data.decode(name, errors="replace")
    except Exception:
        return data.decode("latin-1")


def unflow(text: str, delsp: bool) -> str:
    """Join the soft line breaks of a format=flowed body (RFC 3676)."""
    paragraphs: list[tuple[int, str]] = []
    open_line = False
    for line in text.split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        content = content[1:] if content.startswith(" ") else content
        flowed = content.endswith(" ") and content != "-- "
        piece = content[:-1] if flowed and delsp else content
        if open_line and paragraphs and paragraphs[-1][0] == depth:
            paragraphs[-1] = (depth, paragraphs[-1][1] + piece)
        else:
            paragraphs.append((depth, piece))
        open_line = flowed
    return "\n".join(">" * d + (" " if d else "") + t for d, t in paragraphs)


def part_text(part: Message) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    text = decode_bytes(data, part.get_content_charset())
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if part.get_content_subtype() == "plain" and str(part.get_param("format")).lower() == "flowed":
        text = unflow(text, str(part.get_param("delsp")).lower() == "yes")
    return text


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        return None
    return (decode_words(name) or None) if isinstance(name, str) else None


def _message_size(part: Message) -> int:
    try:
        return sum(
            len(m.as_bytes(policy=_SERIALIZE)) for m in part.get_payload() if isinstance(m, Message)
        )
    except Exception:
        return 0


def walk(part: Message, body: Body, depth: int = 0) -> None:
    """Collect bodies and attachments, without descending into attached messages."""
    if depth > MAX_DEPTH:
        raise invalid(f"MIME parts nested deeper than {MAX_DEPTH} levels")
    ctype = part.get_content_type()
    if body.language is None and ctype.startswith("text/"):
        body.language = header(part, "Content-Language") or None
    if part.get_content_maintype() == "message":
        body.attachments.append(
            Attachment(filename=_filename(part), content_type=ctype, size=_message_size(part))
        )
        forwards = ctype in ("message/rfc822", "message/global") and part.is_multipart()
        inner = part.get_payload(0) if forwards else None
        if body.forwarded is None and isinstance(inner, Message):
            body.forwarded = forwarded_from_message(inner)
        return
    if part.is_multipart():
        for sub in part.get_payload():
            if isinstance(sub, Message):
                walk(sub, body, depth + 1)
        return
    filename = _filename(part)
    is_attachment = part.get_content_disposition() == "attachment" or filename is not None
    if ctype in ("text/plain", "text/html") and not is_attachment:
        (body.texts if ctype == "text/plain" else body.htmls).append(part_text(part))
    elif ctype not in _SIGNATURES and (is_attachment or part.get_content_maintype() != "text"):
        data = part.get_payload(decode=True)
        size = len(data) if isinstance(data, bytes) else 0
        body.attachments.append(Attachment(filename=filename, content_type=ctype, size=size))


# --- forwarded mail -------------------------------------------------------------------


def forwarded_from_message(inner: Message) -> ForwardedMessage:
    try:
        _, address = sender(inner)
    except PermanentError:
        address = None
    return ForwardedMessage(address, header(inner, "Subject"), to_datetime(header(inner, "Date")))

"""The acknowledge link's token: signed by the notifier, verified by the ack gateway (pure).

A token is `<payload>.<signature>`, both base64url without padding. The payload is the
compact JSON list `[version, ticket id, person id, notification key, expiry]`
(expiry in Unix seconds); the signature is HMAC-SHA256 over `ack1.` and the payload
text with the shared secret (`ACK_SECRET`). The token id is a hash of the
notification key, so a page re-sent after a failed attempt carries a token with the
same id: whichever copy is used first acknowledges, the other is "already
acknowledged". Nothing secret is in a token; the signature is checked (in constant
time) before the payload is even parsed, and the expiry only after that.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import quote

__all__ = [
    "AckClaim",
    "AckLinks",
    "TokenError",
    "sign_token",
    "token_id_for",
    "token_ref",
    "verify_token",
]

VERSION = 1
_DOMAIN = b"ack1."  # a signature made for something else with the same secret never fits
MAX_TOKEN_CHARS = 2048  # far above any real token; a longer one is not even decoded
SHORTEST_SECRET = 16


class TokenError(ValueError):
    """A token refused: `reason` is `malformed`, `forged` or `expired`."""

    def __init__(self, reason: str, claim: AckClaim | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.claim = claim  # for `expired`: what the (genuine) token named


@dataclass(frozen=True)
class AckClaim:
    token_id: str
    ticket_id: str
    person: str
    notification_key: str
    expires_at: int  # Unix seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, payload: str) -> str:
    mac = hmac.new(secret.encode(), _DOMAIN + payload.encode("ascii"), hashlib.sha256)
    return _b64(mac.digest())


def token_id_for(notification_key: str) -> str:
    return hashlib.sha256(notification_key.encode()).hexdigest()[:24]


def sign_token(
    secret: str, ticket_id: str, person: str, notification_key: str, expires_at: datetime
) -> str:
    if len(secret) < SHORTEST_SECRET:
        raise ValueError(f"the acknowledge secret must have at least {SHORTEST_SECRET} characters")
    fields = [VERSION, ticket_id, person, notification_key, int(expires_at.timestamp())]
    payload = _b64(json.dumps(fields, separators=(",", ":")).encode())
    return f"{payload}.{_signature(secret, payload)}"


def verify_token(secret: str, token: str, now: datetime) -> AckClaim:
    """The claim of a genuine, unexpired token; raises TokenError otherwise."""
    payload, dot, signature = token.partition(".")
    if not dot or not payload or len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise TokenError("malformed")
    if not hmac.compare_digest(_signature(secret, payload), signature):
        raise TokenError("forged")
    try:
        version, ticket, person, key, expiry = json.loads(_unb64(payload))
        texts = (ticket, person, key)
        if version != VERSION or not all(isinstance(v, str) for v in texts):
            raise ValueError("not this version's fields")
        claim = AckClaim(token_id_for(key), ticket, person, key, int(expiry))
    except (ValueError, TypeError, binascii.Error):
        raise TokenError("malformed") from None  # signed by us yet unreadable: a bug
    if now.timestamp() >= claim.expires_at:
        raise TokenError("expired", claim)
    return claim


def token_ref(token: str) -> str:
    """What a log line may say about a token: a short hash, never the token."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:12]


@dataclass(frozen=True)
class AckLinks:
    """The notifier's side: the link a page carries (`ACK_BASE_URL`, `ACK_SECRET`)."""

    base_url: str
    secret: str = field(repr=False)
    ttl: timedelta = timedelta(days=1)

    def url(self, ticket_id: str, person: str, notification_key: str, now: datetime) -> str:
        token = sign_token(self.secret, ticket_id, person, notification_key, now + self.ttl)
        return f"{self.base_url.rstrip('/')}/ack?t={quote(token, safe='')}"

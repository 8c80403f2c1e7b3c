"""What the gateway answers (no HTTP here): GET confirms, POST acknowledges once.

A POST publishes the `acknowledged` helpdesk update (with confirms) and then records the
token id: a replay finds the id and publishes nothing. The lock keeps two POSTs of one
token in this process from both publishing; replicas sharing a PostgreSQL store can
still race in that window, and then intake gets two identical updates (the message id
is the same, and a second acknowledgement of a ticket changes nothing downstream).
Refusals are logged with the reason and a hash of the token, never the token.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from datetime import datetime

import structlog

from services.ack_gateway import pagerduty as pd
from services.ack_gateway import pages
from services.ack_gateway.store import UsedIds
from services.common.ack_token import AckClaim, TokenError, token_ref, verify_token

log = structlog.get_logger("ack_gateway")

Answer = tuple[int, bytes]  # status, HTML page
Publish = Callable[[bytes, str], None]  # body, message id; raises when not confirmed


def update_body(ticket_id: str, by: str, at: datetime) -> bytes:
    """The helpdesk update intake reads (schemas/inbound.py `Acknowledged`)."""
    stamp = at.isoformat(timespec="seconds").replace("+00:00", "Z")
    return json.dumps(
        {"type": "acknowledged", "ticket_id": ticket_id, "at": stamp, "by": by}
    ).encode()


class Gateway:
    def __init__(
        self, secret: str, used: UsedIds, publish: Publish, pagerduty_secret: str | None = None
    ) -> None:
        self._secret, self._pd_secret = secret, pagerduty_secret
        self.used, self._publish = used, publish
        self._lock = threading.Lock()

    def _verified(self, token: str, now: datetime) -> AckClaim | Answer:
        try:
            return verify_token(self._secret, token, now)
        except TokenError as exc:
            log.warning("ack.refused", reason=exc.reason, token=token_ref(token))
            if exc.reason == "expired":
                return 410, pages.expired(exc.claim)
            return 403, pages.refused()

    def confirm(self, token: str, now: datetime) -> Answer:
        claim = self._verified(token, now)
        if not isinstance(claim, AckClaim):
            return claim
        if self.used.seen(claim.token_id):
            return 200, pages.already(claim)
        return 200, pages.confirm(claim, token)

    def acknowledge(self, token: str, now: datetime) -> Answer:
        claim = self._verified(token, now)
        if not isinstance(claim, AckClaim):
            return claim
        sent = self._once(claim.token_id, claim.ticket_id, claim.person, now)
        if sent is None:
            return 503, pages.unavailable()
        if not sent:
            log.warning("ack.replayed", ticket_id=claim.ticket_id, token_id=claim.token_id)
            return 409, pages.already(claim)
        log.info("ack.published", ticket_id=claim.ticket_id, token_id=claim.token_id)
        return 200, pages.acknowledged(claim)

    def pagerduty(self, body: bytes, signature: str | None, now: datetime) -> tuple[int, str]:
        """PagerDuty's webhook: 2xx once handled (or not ours), so it stops retrying."""
        if self._pd_secret is None:
            return 404, "no PagerDuty webhook secret configured\n"
        if not pd.signature_ok(self._pd_secret, body, signature):
            log.warning("ack.pagerduty_refused", reason="signature", body_bytes=len(body))
            return 401, "signature does not match\n"
        try:
            ack = pd.parse(body)
        except (ValueError, AttributeError):
            return 400, "not a webhook body\n"
        if ack is None:
            return 202, "ignored\n"
        used_id = "pd:" + hashlib.sha256(ack.event_id.encode()).hexdigest()[:40]
        sent = self._once(used_id, ack.ticket_id, ack.by, now)
        if sent is None:
            return 503, "not published; retry\n"
        log.info("ack.pagerduty", ticket_id=ack.ticket_id, replayed=not sent)
        return 200, "acknowledged\n" if sent else "already acknowledged\n"

    def _once(self, used_id: str, ticket_id: str, by: str, now: datetime) -> bool | None:
        """True: published now; False: published before; None: the broker did not confirm."""
        with self._lock:
            if self.used.seen(used_id):
                return False
            try:
                self._publish(update_body(ticket_id, by, now), f"ack-{used_id}")
            except Exception as exc:  # the person is told to retry; nothing recorded
                log.error("ack.publish_failed", ticket_id=ticket_id, error=type(exc).__name__)
                return None
            return self.used.record(used_id, ticket_id, now)

"""From a notification to a real send: pick the contact, render, hand to the channel."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.common.ack_token import AckLinks
from services.notifier.channels import (
    ChatWebhookChannel,
    ConsoleChannel,
    GenericWebhookChannel,
    PagingWebhookChannel,
    RetryPolicy,
    SmtpChannel,
    WebhookChannel,
)
from services.notifier.decisions import TEAM, Notification, reason_word
from services.notifier.notes import TicketNotes
from services.notifier.oncall import OnCall
from services.notifier.render import (
    render_chat,
    render_console,
    render_digest,
    render_email,
    render_generic,
    render_pagerduty,
)
from services.runtime.errors import PermanentError
from services.runtime.secrets import SecretError, read_secret


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)


SINGLE_TRY = RetryPolicy(attempts=1)  # retries are the send queue's, durable, not in-channel
ACKNOWLEDGEABLE = ("opened", "warning", "breached")  # what on-call can acknowledge


def ack_url(links: AckLinks | None, n: Notification, now: datetime) -> str | None:
    """The acknowledge link of a page or reminder to a person; None without ACK_BASE_URL,
    for the team channel, and for follow-ups (acknowledged, resolved)."""
    if links is None or n.person == TEAM or n.action not in ("trigger", "notify"):
        return None
    if reason_word(n.reason) not in ACKNOWLEDGEABLE:
        return None
    return links.url(n.ticket_id, n.person, n.notification_key, now)


def webhook_secret(variable: str | None) -> str:
    """The generic webhook's HMAC secret from `variable` or `variable_FILE` ('' if unset:
    the channel refuses an empty secret as a configuration error)."""
    if variable is None:
        return ""
    try:
        return read_secret(variable) or ""
    except SecretError as exc:
        raise PermanentError(str(exc), reason="config") from None


class Deliverer:
    """Sends one notification over one contact method, one attempt per call.

    Keeps one pooled HTTP client per webhook URL for the life of the process (TLS set up
    once, connections kept alive); httpx clients are safe to share between the sender's
    threads."""

    def __init__(
        self,
        oncall: OnCall,
        smtp: SmtpSettings | None,
        retry: RetryPolicy | None = None,
        ack_links: AckLinks | None = None,
    ) -> None:
        self.oncall = oncall
        self.smtp = smtp
        self.retry = retry or SINGLE_TRY
        self.ack_links = ack_links
        self._hooks: dict[tuple[str, str], WebhookChannel] = {}
        self._lock = threading.Lock()

    def _hook(self, kind: str, url: str, secret: str = "") -> WebhookChannel:
        with self._lock:
            hook = self._hooks.get((kind, url))
            if hook is None:
                if kind == "paging":
                    hook = PagingWebhookChannel(url, retry=self.retry)
                elif kind == "chat":
                    hook = ChatWebhookChannel(url, retry=self.retry)
                else:
                    hook = GenericWebhookChannel(url, secret, retry=self.retry)
                self._hooks[(kind, url)] = hook
            return hook

    def close(self) -> None:
        with self._lock:
            hooks, self._hooks = list(self._hooks.values()), {}
        for hook in hooks:
            hook.close()

    def send(self, n: Notification, notes: TicketNotes, now: datetime) -> None:
        """One notification by `n.channel`; raises TransientError or PermanentError."""
        if n.channel == "team_digest":  # without a digest queue: a one-entry digest at once
            return self.send_digest([(n, notes)], now)
        person = self.oncall.person(n.person)
        if person is None:
            raise PermanentError(f"no person {n.person!r} in the on-call file", reason="config")
        key = n.notification_key
        ack = ack_url(self.ack_links, n, now)
        if n.channel == "email":
            if self.smtp is None:
                raise PermanentError("email notification but SMTP_HOST is not set", reason="config")
            s = self.smtp
            channel = SmtpChannel(
                s.host,
                s.port,
                starttls=s.starttls,
                sender=s.sender,
                username=s.username,
                password=s.password,
                retry=self.retry,
            )
            channel.send(person.email, render_email(n, notes, self.oncall, now, ack), key=key)
        elif n.channel == "paging_webhook" and person.paging_webhook is not None:
            hook = self._hook("paging", str(person.paging_webhook.url))
            hook.send(render_pagerduty(n, notes, self.oncall, now), key=key)
        elif n.channel == "chat_webhook" and person.chat_webhook is not None:
            hook = self._hook("chat", str(person.chat_webhook))
            hook.send(render_chat(n, notes, self.oncall, now, ack), key=key)
        elif n.channel == "generic_webhook" and person.generic_webhook is not None:
            secret = webhook_secret(person.generic_webhook.secret_env)
            hook = self._hook("generic", str(person.generic_webhook.url), secret)
            hook.send(render_generic(n, notes, self.oncall, now, ack), key=key)
        elif n.channel == "console":
            ConsoleChannel(sys.stdout).send(render_console(n, notes, self.oncall, now, ack))
        else:
            raise PermanentError(f"{person.id} has no {n.channel}", reason="config")

    def send_digest(
        self, entries: Sequence[tuple[Notification, TicketNotes]], now: datetime
    ) -> None:
        """One team-channel message for a batch of team notices."""
        first = entries[0][0].notification_key if entries else "empty"
        self.send_team(render_digest(entries, self.oncall, now), key=f"digest:{first}")

    def send_team(self, body: dict[str, Any], key: str) -> None:
        """A Slack-compatible message to the team channel (its text on the console one)."""
        team = self.oncall.team_channel
        if team is None:
            raise PermanentError("a team notice but no team_channel", reason="config")
        if team.chat_webhook is None:
            ConsoleChannel(sys.stdout).send(f"[{team.name}] {body['text']}")
            return
        self._hook("chat", str(team.chat_webhook)).send(body, key=key)

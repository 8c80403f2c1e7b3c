"""From a notification to a real send: pick the contact, render, hand to the channel."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.notifier.channels import (
    ChatWebhookChannel,
    ConsoleChannel,
    GenericWebhookChannel,
    PagingWebhookChannel,
    RetryPolicy,
    SmtpChannel,
)
from services.notifier.decisions import Notification
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


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    starttls: bool = False
    username: str | None = None
    password: str | None = None


class Deliverer:
    def __init__(
        self, oncall: OnCall, smtp: SmtpSettings | None, retry: RetryPolicy | None = None
    ) -> None:
        self.oncall = oncall
        self.smtp = smtp
        self.retry = retry

    def send(self, n: Notification, notes: TicketNotes, now: datetime) -> None:
        """One notification; raises TransientError or PermanentError when it cannot."""
        if n.channel == "team_digest":  # without a digest queue: a one-entry digest at once
            return self.send_digest([(n, notes)], now)
        person = self.oncall.person(n.person)
        if person is None:
            raise PermanentError(f"no person {n.person!r} in the on-call file", reason="config")
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
            channel.send(
                person.email, render_email(n, notes, self.oncall, now), key=n.notification_key
            )
        elif n.channel == "paging_webhook" and person.paging_webhook is not None:
            with PagingWebhookChannel(str(person.paging_webhook.url), retry=self.retry) as hook:
                hook.send(render_pagerduty(n, notes, self.oncall, now), key=n.notification_key)
        elif n.channel == "chat_webhook" and person.chat_webhook is not None:
            with ChatWebhookChannel(str(person.chat_webhook), retry=self.retry) as hook:
                hook.send(render_chat(n, notes, self.oncall, now), key=n.notification_key)
        elif n.channel == "generic_webhook" and person.generic_webhook is not None:
            secret = os.environ.get(person.generic_webhook.secret_env or "", "")
            url = str(person.generic_webhook.url)
            with GenericWebhookChannel(url, secret, retry=self.retry) as hook:
                hook.send(render_generic(n, notes, self.oncall, now), key=n.notification_key)
        elif n.channel == "console":
            ConsoleChannel(sys.stdout).send(render_console(n, notes, self.oncall, now))
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
        with ChatWebhookChannel(str(team.chat_webhook), retry=self.retry) as hook:
            hook.send(body, key=key)

"""Notifier channels against real servers started here: aiosmtpd and local HTTP servers."""

from __future__ import annotations

import email
import email.policy
import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from schemas.ticket import Submitter, TriageHint
from services.notifier.channels import (
    ChatWebhookChannel,
    ConsoleChannel,
    GenericWebhookChannel,
    PagingWebhookChannel,
    RetryPolicy,
    SmtpChannel,
    message_id_for,
    verify_signature,
)
from services.notifier.decisions import Notification
from services.notifier.notes import Page, TicketNotes, TicketSummary
from services.notifier.oncall import OnCall, parse_oncall
from services.notifier.render import (
    EmailContent,
    render_chat,
    render_console,
    render_email,
    render_generic,
    render_pagerduty,
)
from services.runtime.errors import PermanentError, TransientError

FAST = RetryPolicy(attempts=3, initial_s=0.01, max_s=0.05, jitter_s=0.01)
TID = "T-email-0207b44e3d661cc0"
T0 = datetime(2026, 11, 27, 9, 58, 2, tzinfo=UTC)
SCRIPT = "<script>alert('x')</script>"
SECRET = "s3cret-for-tests"

ONCALL = """\
people:
  - id: kim
    name: Kim
    email: kim@support.example
    paging_webhook: {url: "https://pager.example/v2/enqueue", routing_key: RK-KIM}
    timezone: Europe/Amsterdam
  - {id: mira, name: Mira, email: mira@support.example, timezone: America/New_York}
schedules:
  primary:
    timezone: Europe/Amsterdam
    rotation: [kim]
    handoff: {weekday: mon, hour: 9}
    start: 2026-01-05
escalation:
  - {level: 1, schedules: [primary]}
  - {level: 2, people: [mira]}
team_channel: {chat_webhook: "https://chat.example/hooks/team", name: Support}
link_template: "https://helpdesk.example/tickets/{ticket_id}?portal={portal_id}"
"""


# --- the message to send -------------------------------------------------------------


@pytest.fixture(scope="module")
def oncall() -> OnCall:
    return parse_oncall(ONCALL)


@pytest.fixture(scope="module")
def notes() -> TicketNotes:
    summary = TicketSummary(
        account_name="Acme <b>Corp</b>",
        portal_id=4411,
        account_timezone="Europe/Amsterdam",
        channel="email",
        submitter=Submitter(
            role="super_admin", user_id="u-19", email="ana@acme.example", name="Ana <b>Ruiz</b>"
        ),
        subject="Login outage\r\nBcc: victim@evil.example",
        excerpt=f"Nobody can log in since 9:50\n{SCRIPT} <!channel> & more",
        triage_hints=(
            TriageHint(signal="login_outage", points_to="business_critical", phrases=["log in"]),
        ),
        created_at=T0,
    )
    return TicketNotes.model_validate(
        {
            "ticket_id": TID,
            "severity": "business_critical",
            "premium": True,
            "guaranteed": True,
            "started_at": T0,
            "due_at": T0 + timedelta(minutes=30),
            "summary": summary,
            "pages": (Page(reason="opened", level=1, person="kim"),),
        }
    )


def notification(channel: str) -> Notification:
    return Notification.model_validate(
        {
            "ticket_id": TID,
            "reason": "opened",
            "level": 1,
            "person": "kim",
            "channel": channel,
            "action": "trigger",
            "dedup_key": f"{TID}:opened" if channel == "paging_webhook" else None,
        }
    )


# --- a real SMTP server --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Inbox:
    """aiosmtpd handler: answers DATA with the scripted replies in turn, then 250."""

    replies: list[str] = field(default_factory=list)
    messages: list[tuple[Envelope, EmailMessage]] = field(default_factory=list)
    attempts: int = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.attempts += 1
        if self.replies:
            return self.replies.pop(0)
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope, parsed))
        return "250 Message accepted"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def smtp_channel(port: int, **kw: Any) -> SmtpChannel:
    return SmtpChannel(
        "127.0.0.1",
        port,
        starttls=False,
        sender="Premium Support <support@premium.example>",
        timeout=2.0,
        retry=FAST,
        **kw,
    )


def test_email_arrives_with_text_and_html_parts_escaped(
    smtp: tuple[Inbox, int], notes: TicketNotes, oncall: OnCall
) -> None:
    inbox, port = smtp
    n = notification("email")
    content = render_email(n, notes, oncall, T0)
    message_id = smtp_channel(port).send("kim@support.example", content, key=n.notification_key)

    [(envelope, msg)] = inbox.messages
    assert envelope.rcpt_tos == ["kim@support.example"]
    assert envelope.mail_from == "support@premium.example"
    assert msg.get_content_type() == "multipart/alternative"
    assert (
        msg["Message-ID"] == message_id == message_id_for(n.notification_key, "x@premium.example")
    )
    subject = str(msg["Subject"])
    assert "\r" not in subject and "\n" not in subject
    assert TID in subject and "Login outage" in subject
    assert msg["Bcc"] is None and "victim@evil.example" not in envelope.rcpt_tos
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    text_body, html_body = text.get_content(), html.get_content()
    assert SCRIPT in text_body  # plain text carries the user text as is
    assert "&lt;script&gt;" in html_body and "<script>" not in html_body
    assert "Ana &lt;b&gt;Ruiz&lt;/b&gt;" in html_body and "<b>Ruiz" not in html_body


def test_email_resend_carries_the_same_message_id(
    smtp: tuple[Inbox, int], notes: TicketNotes, oncall: OnCall
) -> None:
    inbox, port = smtp
    n = notification("email")
    content = render_email(n, notes, oncall, T0)
    channel = smtp_channel(port)
    first = channel.send("kim@support.example", content, key=n.notification_key)
    second = channel.send("kim@support.example", content, key=n.notification_key)
    assert first == second
    assert [m["Message-ID"] for _, m in inbox.messages] == [first, first]


def test_email_header_injection_is_refused_by_the_channel(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    content = EmailContent(subject="Hi\r\nBcc: victim@evil.example", text="t", html="<p>t</p>")
    with pytest.raises(PermanentError):
        smtp_channel(port).send("kim@support.example", content, key="k")
    with pytest.raises(PermanentError):
        smtp_channel(port).send("kim@x.example\r\nBcc: v@evil.example", content, key="k")
    assert inbox.attempts == 0


def test_smtp_4xx_is_retried_then_delivered(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    inbox.replies = ["451 Try again later", "421 Busy"]
    content = EmailContent(subject="s", text="t", html="<p>t</p>")
    smtp_channel(port).send("kim@support.example", content, key="k")
    assert inbox.attempts == 3 and len(inbox.messages) == 1


def test_smtp_5xx_is_permanent_at_once(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    inbox.replies = ["554 Rejected"] * 5
    content = EmailContent(subject="s", text="t", html="<p>t</p>")
    with pytest.raises(PermanentError, match="554"):
        smtp_channel(port).send("kim@support.example", content, key="k")
    assert inbox.attempts == 1


def test_smtp_not_listening_is_transient_after_retries() -> None:
    port = free_port()  # nothing listens there now
    content = EmailContent(subject="s", text="t", html="<p>t</p>")
    attempts = RetryPolicy(attempts=4, initial_s=0.05, max_s=0.05, jitter_s=0)
    started = time.monotonic()
    with pytest.raises(TransientError):
        SmtpChannel(
            "127.0.0.1", port, starttls=False, sender="s@x.example", timeout=1, retry=attempts
        ).send("kim@support.example", content, key="k")
    elapsed = time.monotonic() - started
    assert 0.14 <= elapsed < 3  # three backoff waits happened, then it gave up


def test_smtp_bad_configuration_is_permanent() -> None:
    with pytest.raises(PermanentError):
        SmtpChannel("127.0.0.1", 25, starttls=True, sender="not-an-address")
    with pytest.raises(PermanentError):
        SmtpChannel("127.0.0.1", 25, starttls=True, sender="s@x.example", username="u")


# --- real HTTP servers ---------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Server:
    """A local HTTP server; `script(n)` gives (status, delay_s) for the n-th request."""

    def __init__(self, script: Callable[[int], tuple[int, float]]) -> None:
        self.requests: list[Received] = []
        self.released = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                index = len(outer.requests)
                outer.requests.append(Received(self.path, dict(self.headers.items()), body))
                status, delay = script(index)
                if delay:
                    outer.released.wait(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the client gave up (timeout)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[int], tuple[int, float]]], Server]]:
    servers: list[Server] = []

    def start(script: Callable[[int], tuple[int, float]]) -> Server:
        servers.append(Server(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def always(status: int, delay: float = 0.0) -> Callable[[int], tuple[int, float]]:
    return lambda _: (status, delay)


Serve = Callable[[Callable[[int], tuple[int, float]]], Server]


def test_chat_webhook_receives_slack_json(serve: Serve, notes: TicketNotes, oncall: OnCall) -> None:
    server = serve(always(200))
    body = render_chat(notification("chat_webhook"), notes, oncall, T0)
    with ChatWebhookChannel(server.url, timeout=2, retry=FAST) as channel:
        assert channel.send(body) == 200
    [got] = server.requests
    assert got.path == "/hook" and got.headers["Content-Type"] == "application/json"
    assert got.json() == body
    assert "<!channel>" not in got.body.decode() and "&lt;!channel&gt;" in got.body.decode()


def test_paging_webhook_receives_pagerduty_events(
    serve: Serve, notes: TicketNotes, oncall: OnCall
) -> None:
    server = serve(always(202))
    trigger = render_pagerduty(notification("paging_webhook"), notes, oncall, T0)
    ack = render_pagerduty(
        notification("paging_webhook").model_copy(update={"action": "acknowledge"}),
        notes,
        oncall,
        T0,
    )
    with PagingWebhookChannel(server.url, timeout=2, retry=FAST) as channel:
        assert channel.send(trigger) == 202
        assert channel.send(ack) == 202
        with pytest.raises(PermanentError):
            channel.send({"event_action": "trigger"})
    first, second = (r.json() for r in server.requests)
    assert first["event_action"] == "trigger" and first["routing_key"] == "RK-KIM"
    assert first["dedup_key"] == second["dedup_key"] == f"{TID}:opened"
    assert first["payload"]["severity"] == "critical" and "\n" not in first["payload"]["summary"]
    assert second == {
        "routing_key": "RK-KIM",
        "event_action": "acknowledge",
        "dedup_key": f"{TID}:opened",
    }


def test_generic_webhook_is_signed(serve: Serve, notes: TicketNotes, oncall: OnCall) -> None:
    server = serve(always(204))
    n = notification("generic_webhook")
    body = render_generic(n, notes, oncall, T0)
    with GenericWebhookChannel(server.url, SECRET, timeout=2, retry=FAST) as channel:
        channel.send(body, key=n.notification_key)
    [got] = server.requests
    timestamp, signature = got.headers["X-Signature-Timestamp"], got.headers["X-Signature"]
    assert signature.startswith("sha256=")
    assert got.headers["X-Notification-Key"] == n.notification_key
    assert got.json() == body
    now = time.time()
    assert verify_signature(SECRET, timestamp, got.body, signature, now)
    tampered = got.body.replace(b"Acme", b"Evil")
    assert tampered != got.body
    assert not verify_signature(SECRET, timestamp, tampered, signature, now)
    assert not verify_signature("other-secret", timestamp, got.body, signature, now)
    assert not verify_signature(SECRET, str(int(timestamp) + 1), got.body, signature, now)
    assert not verify_signature(SECRET, timestamp, got.body, signature, now + 301)


def test_503_twice_then_202_succeeds_after_retries(serve: Serve) -> None:
    server = serve(lambda i: (503 if i < 2 else 202, 0.0))
    with GenericWebhookChannel(server.url, SECRET, timeout=2, retry=FAST) as channel:
        assert channel.send({"hello": "world"}) == 202
    assert len(server.requests) == 3
    for got in server.requests:  # each attempt signed on its own
        ts, sig = got.headers["X-Signature-Timestamp"], got.headers["X-Signature"]
        assert verify_signature(SECRET, ts, got.body, sig, time.time())


@pytest.mark.parametrize("status", [500, 429, 408])
def test_always_failing_is_transient_after_bounded_attempts(serve: Serve, status: int) -> None:
    server = serve(always(status))
    with (
        ChatWebhookChannel(server.url, timeout=2, retry=FAST) as channel,
        pytest.raises(TransientError, match=str(status)),
    ):
        channel.send({"text": "x"})
    assert len(server.requests) == FAST.attempts


@pytest.mark.parametrize("status", [400, 401, 404])
def test_client_error_is_permanent_at_once(serve: Serve, status: int) -> None:
    server = serve(always(status))
    with (
        PagingWebhookChannel(server.url, timeout=2, retry=FAST) as channel,
        pytest.raises(PermanentError, match=str(status)),
    ):
        channel.send({"routing_key": "r", "event_action": "resolve", "dedup_key": "d"})
    assert len(server.requests) == 1


def test_timeout_is_transient_and_fast(serve: Serve) -> None:
    server = serve(always(200, delay=5.0))
    policy = RetryPolicy(attempts=2, initial_s=0.01, max_s=0.01, jitter_s=0)
    started = time.monotonic()
    with (
        ChatWebhookChannel(server.url, timeout=0.2, retry=policy) as channel,
        pytest.raises(TransientError, match="timed out"),
    ):
        channel.send({"text": "x"})
    assert time.monotonic() - started < 2.0
    assert len(server.requests) == 2


def test_connection_refused_is_transient() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    with ChatWebhookChannel(url, timeout=1, retry=FAST) as channel, pytest.raises(TransientError):
        channel.send({"text": "x"})


def test_bad_webhook_configuration_is_permanent() -> None:
    with pytest.raises(PermanentError):
        ChatWebhookChannel("ftp://example.com/x")
    with pytest.raises(PermanentError):
        GenericWebhookChannel("http://127.0.0.1/x", secret="")


def test_console_writes_the_rendered_text(notes: TicketNotes, oncall: OnCall) -> None:
    stream = io.StringIO()
    text = render_console(notification("console"), notes, oncall, T0)
    ConsoleChannel(stream).send(text)
    assert stream.getvalue() == text
    assert TID in stream.getvalue()

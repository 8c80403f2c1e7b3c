"""Endpoints for outage tests that can really go down and come back on the same port.

`HttpSink` is a paging / chat webhook receiver (HTTP/1.1 with keep-alive, as a real
PagerDuty or Slack endpoint, so the notifier's pooled connections are exercised);
`SmtpSink` an SMTP server (aiosmtpd). Each is switched with `down(how)` and `up()`:

- `down("refuse")`: really down. The listening socket is closed (new connections are
  refused), idle keep-alive connections are closed, and a request that still arrives on
  one is dropped unanswered, as a dying process would. A request already being answered
  is finished first, so the sink never records a delivery its client did not see
  (that would be a duplicate the test cannot blame on the sender).
- `down("error")`: up but failing: HTTP 503, SMTP 451 at DATA (both transient). The
  rejected attempts are recorded (`rejected`), so a test can see every try.
- `down("hang")`: the port is held by a `BlackHole`: connections are made but never
  answered, so each attempt lasts as long as the client's timeout.

Every accepted request or mail is recorded with `time.monotonic()` of its arrival;
`transitions` lists `(monotonic, state)` of each switch.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

State = Literal["up", "refuse", "error", "hang"]
How = Literal["refuse", "error", "hang"]


class BlackHole:
    """A listening socket that never accepts: connections complete in the kernel's
    backlog (then SYNs are dropped), nothing is ever read or answered, so every client
    waits for its own timeout, as with a host that hangs or a firewall that drops."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)

    def close(self) -> None:
        self.sock.close()  # what waits in the backlog is reset, never answered


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Hit:
    at: float  # time.monotonic() when it arrived
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # connections we cut ourselves end in errors; nothing to report


class HttpSink:
    """A local HTTP endpoint answering POSTs with `status` (202) while up."""

    def __init__(self, status: int = 202, host: str = "127.0.0.1", port: int = 0) -> None:
        self.status = status
        self.host = host
        self.state: State = "up"
        self.hits: list[Hit] = []
        self.transitions: list[tuple[float, State]] = [(time.monotonic(), "up")]
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._hole: BlackHole | None = None
        self.port = self._listen(port)
        self.url = f"http://{host}:{self.port}/hook"

    # --- what arrived ----------------------------------------------------------------

    @property
    def delivered(self) -> list[Hit]:
        return [h for h in list(self.hits) if 200 <= h.status < 300]

    @property
    def rejected(self) -> list[Hit]:
        return [h for h in list(self.hits) if not 200 <= h.status < 300]

    # --- switching -------------------------------------------------------------------

    def down(self, how: How = "refuse") -> None:
        with self._lock:
            self.state = how
            self.transitions.append((time.monotonic(), how))
            server = self._server if how != "error" else None
            if how != "error":
                self._server = None
        if server is not None:
            server.shutdown()
            server.server_close()  # the listening socket: connections are refused now
            with self._lock:
                conns = list(self._conns)
            for conn in conns:  # idle keep-alive connections see EOF and are closed
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RD)
        if how == "hang" and self._hole is None:
            self._hole = BlackHole(self.host, self.port)

    def up(self) -> None:
        with self._lock:
            self.state = "up"
            self.transitions.append((time.monotonic(), "up"))
            listening = self._server is not None
        if self._hole is not None:
            self._hole.close()
            self._hole = None
        if not listening:
            self._listen(self.port)

    def close(self) -> None:
        self.down("refuse")
        if self._hole is not None:
            self._hole.close()
            self._hole = None

    # --- the server ------------------------------------------------------------------

    def _listen(self, port: int) -> int:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like the real endpoints

            def setup(self) -> None:
                super().setup()
                with sink._lock:
                    sink._conns.add(self.connection)

            def finish(self) -> None:
                try:
                    super().finish()
                finally:
                    with sink._lock:
                        sink._conns.discard(self.connection)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with sink._lock:
                    state = sink.state
                    if state in ("refuse", "hang"):
                        self.close_connection = True  # dropped unanswered
                        return
                    status = 503 if state == "error" else sink.status
                    sink.hits.append(
                        Hit(time.monotonic(), self.path, dict(self.headers.items()), body, status)
                    )
                reply = b'{"status":"success"}' if status < 300 else b'{"status":"unavailable"}'
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                    self.wfile.flush()
                except OSError:
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = _Server((self.host, port), Handler)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        with self._lock:
            self._server, self._thread = server, thread
        return int(server.server_address[1])


@dataclass(frozen=True)
class Mail:
    at: float  # time.monotonic() when DATA ended
    envelope_to: tuple[str, ...]
    message: EmailMessage

    @property
    def key(self) -> str:
        return str(self.message["X-Premium-Support-Key"])


@dataclass
class SmtpSink:
    """aiosmtpd on a fixed port; a new Controller each time it comes up."""

    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    state: State = "up"
    messages: list[Mail] = field(default_factory=list)
    rejected: list[Mail] = field(default_factory=list)
    transitions: list[tuple[float, State]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._controller: Controller | None = None
        self._hole: BlackHole | None = None
        self._start()
        self.transitions.append((time.monotonic(), "up"))

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        mail = Mail(time.monotonic(), tuple(envelope.rcpt_tos), parsed)
        # This runs on the server's event loop, and the reply is written in the same
        # step: a mail recorded here is a mail whose 250 went out.
        if self.state in ("refuse", "hang"):
            return "421 4.3.2 Service shutting down"
        if self.state == "error":
            self.rejected.append(mail)
            return "451 4.3.0 Temporarily unable to accept mail, try again later"
        self.messages.append(mail)
        return "250 Message accepted"

    def down(self, how: How = "refuse") -> None:
        self.state = how
        self.transitions.append((time.monotonic(), how))
        if how != "error" and self._controller is not None:
            self._controller.stop()  # closes the listener and every session
            self._controller = None
        if how == "hang" and self._hole is None:
            self._hole = BlackHole(self.host, self.port)

    def up(self) -> None:
        if self._hole is not None:
            self._hole.close()
            self._hole = None
        if self._controller is None:
            self._start()
        self.state = "up"
        self.transitions.append((time.monotonic(), "up"))

    def close(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        if self._hole is not None:
            self._hole.close()
            self._hole = None

    def _start(self) -> None:
        # A fresh loop per start: a stopped Controller's loop is not reused.
        loop = asyncio.new_event_loop()
        controller = Controller(self, hostname=self.host, port=self.port, loop=loop)
        controller.start()
        self._controller = controller

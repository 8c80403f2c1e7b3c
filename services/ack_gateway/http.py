"""The gateway's HTTP edge: `GET /ack?t=` confirms, `POST /ack` (form field `t`)
acknowledges, `POST /pagerduty` takes PagerDuty's v3 webhook, `GET /healthz`.

What a request costs is bounded: at most `threads` requests are served at once (one
more is answered 503 at once and closed), each socket read waits at most
REQUEST_TIMEOUT_S, and a body over MAX_BODY bytes is refused unread. Nothing logs
request lines: they carry the token.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import structlog

from services.ack_gateway.gateway import Gateway

log = structlog.get_logger("ack_gateway")
REQUEST_TIMEOUT_S = 5.0
MAX_BODY = 64 * 1024  # a PagerDuty webhook is a few KiB; a form is one token
BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_HTML_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "Referrer-Policy": "no-referrer",  # the page's own URL holds the token
    "X-Frame-Options": "DENY",
}


def _token(query: str) -> str:
    return parse_qs(query, max_num_fields=4).get("t", [""])[0]


class _Handler(BaseHTTPRequestHandler):
    server: AckServer
    timeout = REQUEST_TIMEOUT_S
    server_version = "premium-support-ack-gateway"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path == "/ack":
            self._send(*self.server.gateway.confirm(_token(query), self.server.now()))
        elif path == "/healthz":
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
        else:
            self._send(404, b"not found\n", "text/plain; charset=utf-8")

    def do_POST(self) -> None:
        path = self.path.partition("?")[0]
        if path not in ("/ack", "/pagerduty"):
            self._send(404, b"not found\n", "text/plain; charset=utf-8")
            return
        body = self._body()
        if body is None:
            return
        gateway, now = self.server.gateway, self.server.now()
        if path == "/ack":
            self._send(*gateway.acknowledge(_token(body.decode("latin-1")), now))
            return
        status, text = gateway.pagerduty(body, self.headers.get("X-PagerDuty-Signature"), now)
        self._send(status, text.encode(), "text/plain; charset=utf-8")

    def _body(self) -> bytes | None:
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            self._send(411, b"Content-Length required\n", "text/plain; charset=utf-8")
            return None
        if int(length) > MAX_BODY:
            self._send(413, b"too large\n", "text/plain; charset=utf-8")
            return None
        return self.rfile.read(int(length))

    def _send(self, status: int, body: bytes, content_type: str | None = None) -> None:
        self.send_response(status)
        headers = _HTML_HEADERS | ({"Content-Type": content_type} if content_type else {})
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # http.server would print the request line, token included


class AckServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        gateway: Gateway,
        threads: int = 8,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.gateway, self.now = gateway, now
        self._slots = threading.BoundedSemaphore(threads)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):  # busy: say so, and do not wait for it
                request.sendall(BUSY)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; one line, without the request, here.
        log.warning("ack_gateway.http_error", error=type(sys.exc_info()[1]).__name__)

"""`premium-support sink http`: a local webhook receiver that prints what it is sent.

For trying the notifier on one machine: `examples/local/oncall.yaml` points the paging,
chat, signed and team webhooks at it. It answers every POST with 202, as PagerDuty's
Events API does (chat webhooks take any 2xx), and prints one block per request: the
method and path, the notification key, the signature check, and the JSON body.

What it prints is untrusted text (subjects come from customers): it is written as plain
text with control characters escaped, never interpreted as markup. A paging payload's
`routing_key` is a credential of the paging service and is masked.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

# Header names in lower case: `describe` gets them so, whatever case the client sent.
KEY_HEADER = "x-notification-key"
SIGNATURE_HEADER = "x-signature"
TIMESTAMP_HEADER = "x-signature-timestamp"
MAX_BODY = 1 << 20


def signature_note(headers: Mapping[str, str], raw: bytes, secret: bytes | None) -> str | None:
    """Whether a signed webhook's `X-Signature` matches (HMAC-SHA256 over
    `<timestamp>.<body>`, see services/notifier/channels_http.py); None if unsigned."""
    given = headers.get(SIGNATURE_HEADER)
    if given is None:
        return None
    if secret is None:
        return "signed (give --secret-env to check the signature)"
    signed = headers.get(TIMESTAMP_HEADER, "").encode() + b"." + raw
    expected = "sha256=" + hmac.new(secret, signed, hashlib.sha256).hexdigest()
    return "signature valid" if hmac.compare_digest(given, expected) else "signature INVALID"


def describe(
    method: str, path: str, headers: Mapping[str, str], raw: bytes, secret: bytes | None
) -> str:
    """The printed block for one request; `headers` keyed by lower-case name."""
    lines = [f"{method} {_text(path)}"]
    if key := headers.get(KEY_HEADER):
        lines.append(f"  X-Notification-Key: {_text(key)}")
    if note := signature_note(headers, raw, secret):
        lines.append(f"  {note}")
    try:
        body: Any = json.loads(raw)
    except ValueError:
        lines.append(f"  (not JSON) {_text(raw.decode('utf-8', 'replace'))}")
    else:
        if isinstance(body, dict) and "routing_key" in body:
            body["routing_key"] = "***"  # the paging service's integration key
        text = json.dumps(body, indent=2, ensure_ascii=False)  # escapes control characters
        lines += [f"  {_text(line)}" for line in text.splitlines()]  # and bidi controls
    return "\n".join(lines) + "\n"


def _text(value: str) -> str:
    """One line of untrusted text with control characters escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in value)


def serve_http(host: str, port: int, secret: bytes | None, out: TextIO = sys.stdout) -> None:
    """Serve until interrupted; one printed block per request."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
            raw = self.rfile.read(length)
            reply = b'{"status": "success", "message": "Event processed"}'
            self.send_response(202)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
            headers = {name.lower(): value for name, value in self.headers.items()}
            block = describe("POST", self.path, headers, raw, secret)
            with lock:
                out.write(block)
                out.flush()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the block above is the log

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    out.write(f"listening on http://{host}:{port}/ (Ctrl-C stops)\n")
    out.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()

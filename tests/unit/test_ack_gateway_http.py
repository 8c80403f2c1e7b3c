"""The ack gateway's HTTP edge (services.ack_gateway.http) on a real socket: routes,
the form POST, the PagerDuty webhook, the body limit, the bound on requests at once."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from services.ack_gateway.gateway import Gateway
from services.ack_gateway.http import MAX_BODY, AckServer
from services.ack_gateway.store import UsedIds
from services.common.ack_token import sign_token
from services.common.store_engine import engine_for

SECRET = "ack-secret-for-unit-tests"
PD_SECRET = "pagerduty-secret-for-tests"
TID = "T-email-0207b44e3d661cc0"


class Recorder:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def __call__(self, body: bytes, message_id: str) -> None:
        self.sent.append(body)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Recorder, AckServer]]:
    used = UsedIds(engine_for(str(tmp_path / "ack.db")))
    used.migrate()
    recorder = Recorder()
    server = AckServer(("127.0.0.1", 0), Gateway(SECRET, used, recorder, PD_SECRET), threads=2)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    yield f"http://127.0.0.1:{server.port}", recorder, server
    server.shutdown()
    server.server_close()


def token() -> str:
    now = datetime.now(UTC)
    return sign_token(SECRET, TID, "kim", f"{TID}:opened:1:kim:email", now + timedelta(hours=1))


def test_get_then_post_over_http(served: tuple[str, Recorder, AckServer]) -> None:
    base, recorder, _ = served
    with httpx.Client(base_url=base, timeout=5) as http:
        shown = http.get("/ack", params={"t": token()})
        assert shown.status_code == 200 and shown.headers["Cache-Control"] == "no-store"
        assert shown.headers["Referrer-Policy"] == "no-referrer"
        assert shown.headers["Content-Type"].startswith("text/html") and recorder.sent == []
        assert http.post("/ack", data={"t": token()}).status_code == 200
        assert http.post("/ack", data={"t": token()}).status_code == 409
        assert http.get("/ack").status_code == 403  # no token at all
        assert http.get("/healthz").text == "ok\n"
        assert http.get("/other").status_code == 404
        assert http.put("/ack").status_code == 501
    assert len(recorder.sent) == 1


def test_pagerduty_webhook_over_http(served: tuple[str, Recorder, AckServer]) -> None:
    base, recorder, _ = served
    body = json.dumps(
        {
            "event": {
                "id": "E1",
                "event_type": "incident.acknowledged",
                "data": {"incident_key": f"{TID}:breached"},
            }
        }
    ).encode()
    good = "v1=" + hmac.new(PD_SECRET.encode(), body, hashlib.sha256).hexdigest()
    with httpx.Client(base_url=base, timeout=5) as http:
        bad = http.post("/pagerduty", content=body, headers={"X-PagerDuty-Signature": "v1=00"})
        assert bad.status_code == 401 and recorder.sent == []
        ok = http.post("/pagerduty", content=body, headers={"X-PagerDuty-Signature": good})
        assert ok.status_code == 200
    assert [json.loads(b)["ticket_id"] for b in recorder.sent] == [TID]


def test_a_body_over_the_limit_is_refused_unread(served: tuple[str, Recorder, AckServer]) -> None:
    base, recorder, _ = served
    with httpx.Client(base_url=base, timeout=5) as http:
        answer = http.post("/ack", content=b"t=" + b"a" * MAX_BODY)
    assert answer.status_code == 413 and recorder.sent == []


def test_requests_beyond_the_thread_bound_get_503(served: tuple[str, Recorder, AckServer]) -> None:
    base, _, server = served
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
    try:
        with httpx.Client(base_url=base, timeout=5) as http:
            assert http.get("/healthz").status_code == 503  # both threads wait on idle sockets
    finally:
        for s in idle:
            s.close()
    deadline = time.monotonic() + 3  # the two threads see EOF and give their slots back
    with httpx.Client(base_url=base, timeout=5) as http:
        while (status := http.get("/healthz").status_code) == 503 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert status == 200

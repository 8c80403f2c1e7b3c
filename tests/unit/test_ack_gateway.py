"""The ack gateway's answers (services.ack_gateway.gateway) on a real SQLite store, with
a recording publisher in place of the broker (the broker is the integration test's)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from schemas.inbound import Acknowledged, HelpdeskUpdate
from services.ack_gateway.gateway import Gateway
from services.ack_gateway.store import UsedIds
from services.common.ack_token import sign_token
from services.common.store_engine import engine_for
from services.runtime.logging import configure_logging

SECRET = "ack-secret-for-unit-tests"
PD_SECRET = "pagerduty-secret-for-tests"
T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
TID = "T-email-0207b44e3d661cc0"
UPDATE = TypeAdapter(HelpdeskUpdate)


@dataclass
class Published:
    """Records what would go to support.inbound; `fail` raises as an unconfirmed publish."""

    sent: list[tuple[dict[str, object], str]] = field(default_factory=list)
    fail: bool = False

    def __call__(self, body: bytes, message_id: str) -> None:
        if self.fail:
            raise ConnectionError("broker gone")
        self.sent.append((json.loads(body), message_id))


@pytest.fixture
def published() -> Published:
    return Published()


@pytest.fixture
def gateway(tmp_path: Path, published: Published) -> Gateway:
    used = UsedIds(engine_for(str(tmp_path / "ack.db")))
    used.migrate()
    return Gateway(SECRET, used, published, PD_SECRET)


def token(key: str = f"{TID}:opened:1:kim:email") -> str:
    return sign_token(SECRET, TID, "kim", key, T0 + timedelta(hours=1))


def test_get_confirms_and_publishes_nothing(gateway: Gateway, published: Published) -> None:
    status, page = gateway.confirm(token(), T0)
    assert status == 200 and b'method="post"' in page and TID.encode() in page
    assert published.sent == []


def test_post_publishes_the_helpdesk_update_once(gateway: Gateway, published: Published) -> None:
    status, page = gateway.acknowledge(token(), T0)
    assert status == 200 and b"Acknowledged" in page
    [(body, message_id)] = published.sent
    update = UPDATE.validate_python(body)  # what intake reads from a helpdesk
    assert isinstance(update, Acknowledged)
    assert (update.ticket_id, update.by) == (TID, "kim")
    assert message_id.startswith("ack-")

    status, page = gateway.acknowledge(token(), T0 + timedelta(minutes=1))
    assert status == 409 and b"Already acknowledged" in page
    assert gateway.confirm(token(), T0)[1].count(b"acknowledged already") == 1
    assert len(published.sent) == 1


def test_two_posts_at_once_publish_once(gateway: Gateway, published: Published) -> None:
    answers: list[int] = []
    threads = [
        threading.Thread(target=lambda: answers.append(gateway.acknowledge(token(), T0)[0]))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [200, 409, 409, 409] and len(published.sent) == 1


def test_a_failed_publish_is_not_recorded(gateway: Gateway, published: Published) -> None:
    published.fail = True
    assert gateway.acknowledge(token(), T0)[0] == 503
    published.fail = False
    assert gateway.acknowledge(token(), T0)[0] == 200 and len(published.sent) == 1


def test_forged_and_expired_tokens_are_refused_and_logged_without_the_token(
    gateway: Gateway, published: Published, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json", "info")  # whatever an earlier test set, warnings are shown
    forged = token()[:-3] + "AAA"
    assert gateway.acknowledge(forged, T0)[0] == 403
    status, page = gateway.acknowledge(token(), T0 + timedelta(hours=2))
    assert status == 410 and b"expired" in page and TID.encode() in page
    assert published.sent == []
    logged = capsys.readouterr()
    text = logged.out + logged.err
    assert "ack.refused" in text and "forged" in text and "expired" in text
    assert forged not in text and token() not in text and SECRET not in text


def test_pages_escape_what_the_token_names(tmp_path: Path, published: Published) -> None:
    used = UsedIds(engine_for(str(tmp_path / "ack.db")))
    used.migrate()
    gateway = Gateway(SECRET, used, published)
    evil = sign_token(SECRET, TID, "<script>x</script>", "k", T0 + timedelta(hours=1))
    page = gateway.confirm(evil, T0)[1]
    assert b"<script>" not in page and b"&lt;script&gt;" in page


def pd_post(gateway: Gateway, event_id: str, secret: str = PD_SECRET) -> tuple[int, str]:
    body = json.dumps(
        {
            "event": {
                "id": event_id,
                "event_type": "incident.acknowledged",
                "agent": {"summary": "Kim"},
                "data": {"incident_key": f"{TID}:opened"},
            }
        }
    ).encode()
    signature = "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return gateway.pagerduty(body, signature, T0)


def test_pagerduty_acknowledgement_is_published_once(
    gateway: Gateway, published: Published
) -> None:
    assert pd_post(gateway, "E1") == (200, "acknowledged\n")
    assert pd_post(gateway, "E1") == (200, "already acknowledged\n")
    assert pd_post(gateway, "E2", secret="not-the-secret-at-all")[0] == 401
    [(body, _)] = published.sent
    assert body["ticket_id"] == TID and body["by"] == "pagerduty:Kim"


def test_pagerduty_without_its_secret_is_not_served(tmp_path: Path, published: Published) -> None:
    used = UsedIds(engine_for(str(tmp_path / "ack.db")))
    used.migrate()
    assert pd_post(Gateway(SECRET, used, published), "E1")[0] == 404
    assert published.sent == []


def test_run_ack_gateway_without_its_secret_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACK_")}
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "run", "ack-gateway"],
        cwd=Path(__file__).resolve().parents[2],
        env=env | {"ACK_STORE_URL": str(tmp_path / "ack.db"), "LOG_LEVEL": "warning"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: ACK_SECRET: set it (at least 16 characters)"
    ]

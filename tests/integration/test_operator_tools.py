"""`premium-support status` and `premium-support dlq ...` against the real broker, with
dead letters made by the running intake or written as the runtime writes them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pika
import pytest
from typer.testing import CliRunner, Result

from services.cli import app
from services.intake.main import IntakeSettings
from services.operator.config import management_endpoint
from services.operator.dlq_broker import connect
from services.runtime.app import ServiceRunner, declare_topology
from services.runtime.logging import configure_logging
from services.runtime.metrics import RuntimeMetrics
from services.sla_timer.clock import Clock
from services.sla_timer.main import SlaSettings
from services.sla_timer.main import bootstrap as sla_bootstrap
from services.sla_timer.store import ClockStore, engine_for
from services.upstream import UpstreamPublisher, pika_parameters
from tests.conftest import ROOT
from tests.integration.conftest import RunningService, wait_for
from tests.support.broker import missing
from tests.support.capture import Capture, queue_depth

CHAT = json.loads((ROOT / "examples/inbound/chat.json").read_text())
CLOSED_PORT = "http://127.0.0.1:1"  # nothing listens: the management API "does not answer"


@pytest.fixture
def cli(amqp_url: str, prefix: str, tmp_path: Path) -> Any:
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, **env: str | None) -> Result:
        base: dict[str, str | None] = {
            "AMQP_URL": amqp_url,
            "AMQP_PREFIX": prefix,
            "MANAGEMENT_URL": None,
            "SLA_STORE_URL": str(tmp_path / "no-store.db"),
            "LOG_FORMAT": "console",
            "LOG_LEVEL": "warning",
            "COLUMNS": "250",
        }
        result = runner.invoke(app, list(args), input=input, env=base | env)
        # The command configured logging onto the runner's stderr, closed by now: back to
        # the real one, or a later test's log line fails on a closed file.
        configure_logging("console", "warning")
        return result

    return invoke


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def chat(conversation: str) -> bytes:
    return json.dumps(CHAT | {"conversation_id": conversation}).encode()


def put_dead_letter(
    amqp_url: str, prefix: str, body: bytes, message_id: str, reason: str, **headers: Any
) -> None:
    """A dead letter as services.runtime.failures writes it, with the counters a
    redelivered input carries; `x_death=...` makes it look dead-lettered by the broker."""
    now = datetime.now(UTC).isoformat()
    record: dict[str, Any] = {
        "x-error": f"{reason}: made by the test",
        "x-error-reason": reason,
        "x-service": "intake",
        "x-attempts": 5,
        "x-first-failure-at": now,
        "x-last-failure-at": now,
        "x-original-exchange": f"{prefix}support.inbound",
        "x-original-routing-key": "inbound.chat",
        "x-original-queue": f"{prefix}intake.inbound",
        "x-delivery-count": 4,
        "x-publish-token": "stale",
        "upstream-trace": "kept",
    }
    if "x_death" in headers:
        record = {"x-death": headers.pop("x_death"), "upstream-trace": "kept"}
    conn = pika.BlockingConnection(pika_parameters(amqp_url))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            "",
            f"{prefix}intake.inbound.dead",
            body,
            pika.BasicProperties(
                content_type="application/json",
                delivery_mode=2,
                message_id=message_id,
                headers=record | headers,
            ),
            mandatory=True,
        )
    finally:
        conn.close()


def dead_depth(amqp_url: str, prefix: str, service_queue: str = "intake.inbound") -> int:
    return queue_depth(amqp_url, f"{prefix}{service_queue}.dead")


def opened_for(events: Capture, correlation: str) -> list[dict[str, Any]]:
    return [
        r.json()
        for r in events.drain()
        if r.routing_key.startswith("ticket.opened") and r.json()["correlationid"] == correlation
    ]


def row(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(q for q in status["queues"] if q["name"] == name)


# -- status ---------------------------------------------------------------------------------


def test_status_from_passive_declares_when_the_api_does_not_answer(
    cli: Any, intake: RunningService, upstream: UpstreamPublisher, amqp_url: str, prefix: str
) -> None:
    upstream.publish("chat", b'{"broken', message_id="broken-1")
    upstream.publish("chat", b"[1, 2", message_id="broken-2")
    upstream.publish("chat", chat("c-unrouted"), routing_key="inbound.fax")
    wait_for(lambda: dead_depth(amqp_url, prefix) == 2)

    status = as_json(cli("status", "--json", MANAGEMENT_URL=CLOSED_PORT))

    assert status["source"] == "passive"
    assert CLOSED_PORT in status["source_detail"]
    inbound = row(status, "intake.inbound")
    assert inbound == {
        "name": "intake.inbound",
        "queue": f"{prefix}intake.inbound",
        "exists": True,
        "ready": 0,
        "unacked": None,  # a passive declare cannot tell
        "consumers": 1,
        "dead_letter_queue": f"{prefix}intake.inbound.dead",
        "dead_letters": 2,
    }
    assert row(status, "sla_timer.events")["consumers"] == 0
    assert row(status, "support.unrouted")["dead_letter_queue"] is None
    assert status["unrouted"] == 1
    assert "no SLA store" in status["sla"]["error"]

    human = cli("status", MANAGEMENT_URL=CLOSED_PORT)
    assert human.exit_code == 0, human.output
    assert "source: passive queue declares; unacked unknown" in human.stdout
    assert "intake.inbound" in human.stdout and "support.unrouted" in human.stdout


def _management_answers(amqp_url: str) -> bool:
    endpoint = management_endpoint(amqp_url, None)
    try:
        response = httpx.get(
            f"{endpoint.base_url}/api/overview",
            auth=(endpoint.username, endpoint.password),
            timeout=3,
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def test_status_from_the_management_api(
    cli: Any, intake: RunningService, upstream: UpstreamPublisher, amqp_url: str, prefix: str
) -> None:
    if not _management_answers(amqp_url):
        missing(
            "the RabbitMQ management API does not answer on port 15672; enable it with "
            "`rabbitmq-plugins enable rabbitmq_management` (.ci/run does)"
        )
    upstream.publish("chat", b'{"broken', message_id="broken-1")
    upstream.publish("chat", chat("c-unrouted"), routing_key="inbound.fax")
    wait_for(lambda: dead_depth(amqp_url, prefix) == 1)

    def settled() -> bool:
        # NOTE: the API's counts are sampled by the broker, every 5 s by default.
        status = as_json(cli("status", "--json"))
        inbound = row(status, "intake.inbound")
        return bool(
            inbound["consumers"] == 1 and inbound["dead_letters"] == 1 and status["unrouted"] == 1
        )

    wait_for(settled, timeout=30)
    status = as_json(cli("status", "--json"))
    assert status["source"] == "management"
    assert status["source_detail"].endswith(":15672")
    assert row(status, "intake.inbound")["unacked"] == 0  # known here, unlike passive
    assert row(status, "notifier.events")["exists"] is True
    assert "source: management API" in cli("status").stdout


class FakeManagementApi:
    """An HTTP server that answers as another broker's management API would: every queue
    there, with counts that are not ours."""

    def __init__(self, cluster: str = "rabbit@elsewhere") -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/api/overview"):
                    body = {"management_version": "3.10.0", "cluster_name": cluster}
                else:
                    body = {"messages_ready": 999, "messages_unacknowledged": 9, "consumers": 7}
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def other_api() -> Iterator[FakeManagementApi]:
    api = FakeManagementApi()
    yield api
    api.close()


def one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    [line] = result.stderr.strip().splitlines()
    return line


@pytest.mark.parametrize("management", [None, "closed", "other"])
def test_status_fails_clearly_when_the_broker_cannot_be_reached(
    cli: Any, other_api: FakeManagementApi, management: str | None
) -> None:
    """Whatever answers HTTP (nothing, the default host's port 15672, another broker's
    API), an AMQP_URL that reaches no broker is exit 1 and one line."""
    api = {None: None, "closed": CLOSED_PORT, "other": other_api.url}[management]
    result = cli("status", AMQP_URL="amqp://guest:s3cr3t-pw@127.0.0.1:1//", MANAGEMENT_URL=api)
    line = one_line_error(result)
    assert line.startswith("error: cannot reach the broker at amqp://guest@127.0.0.1:1//")
    assert "check that RabbitMQ runs there" in line
    assert "s3cr3t-pw" not in result.output  # no password in messages


def test_status_says_a_vhost_does_not_exist(cli: Any, amqp_url: str) -> None:
    wrong = urlsplit(amqp_url)._replace(path="/no-such-vhost").geturl()
    line = one_line_error(cli("status", AMQP_URL=wrong, MANAGEMENT_URL=CLOSED_PORT))
    assert "vhost 'no-such-vhost' does not exist" in line


def test_status_uses_the_management_api_of_its_own_broker_only(
    cli: Any, settings: IntakeSettings, other_api: FakeManagementApi
) -> None:
    declare_topology(settings)
    status = as_json(cli("status", "--json", MANAGEMENT_URL=other_api.url))
    assert status["source"] == "passive"
    assert "rabbit@elsewhere" in status["source_detail"]
    assert row(status, "intake.inbound")["ready"] == 0  # ours, not the other API's 999

    conn = connect(settings)
    ours = conn.connection.server_properties["cluster_name"]
    conn.release()
    same = FakeManagementApi(cluster=ours)  # answers for our cluster: it is used
    try:
        status = as_json(cli("status", "--json", MANAGEMENT_URL=same.url))
    finally:
        same.close()
    assert (status["source"], row(status, "intake.inbound")["ready"]) == ("management", 999)


def _clock(ticket: str, now: datetime, due_in: timedelta, **extra: Any) -> Clock:
    return Clock.model_validate(
        {
            "ticket_id": ticket,
            "correlation_id": f"corr-{ticket}",
            "channel": "email",
            "role": "super_admin",
            "severity": "business_critical",
            "call_kind": None,
            "premium": True,
            "rule": "test",
            "guaranteed": True,
            "calendar": "24x7",
            "policy_version": "v1",
            "started_at": now - timedelta(hours=3),
            "due_at": now + due_in,
            "warn_at": now + due_in - timedelta(minutes=5),
            **extra,
        }
    )


def test_status_json_reports_the_sla_store(
    cli: Any, settings: IntakeSettings, store_url: str
) -> None:
    declare_topology(settings)
    now = datetime.now(UTC)
    clocks = [
        _clock("T-soon", now, timedelta(minutes=10)),
        _clock("T-later", now, timedelta(hours=2), guaranteed=False, severity="standard"),
        _clock(
            "T-new-breach",
            now,
            -timedelta(minutes=10),
            warned=True,
            state="breached",
            breached_at=now - timedelta(minutes=9),
        ),
        _clock(
            "T-old-breach",
            now,
            -timedelta(hours=2),
            warned=True,
            state="breached",
            breached_at=now - timedelta(hours=2),
        ),
        _clock("T-met", now, timedelta(hours=1), state="met", stopped_at=now),
    ]
    store = ClockStore(engine_for(store_url))
    store.migrate()
    with store.transaction() as conn:
        for clock in clocks:
            store.save(
                conn,
                clock.ticket_id,
                clock.model_dump(mode="json"),
                state=clock.state,
                next_fire_at=clock.next_fire(),
                policy_version=clock.policy_version,
                now=now,
            )
    store.engine.dispose()

    sla = as_json(cli("status", "--json", SLA_STORE_URL=store_url))["sla"]

    assert sla["error"] is None
    assert sla["open"] == {"running": 2, "breached": 2}
    assert sla["by_state"] == {"running": 2, "breached": 2, "met": 1}
    soonest, later = sla["next_deadlines"]
    assert (soonest["ticket_id"], soonest["fires"], soonest["kind"]) == (
        "T-soon",
        "warning",
        "guaranteed",
    )
    assert datetime.fromisoformat(soonest["due_at"]) == clocks[0].due_at
    assert (later["ticket_id"], later["kind"], later["severity"]) == (
        "T-later",
        "target",
        "standard",
    )
    assert [b["ticket_id"] for b in sla["breaches_last_hour"]] == ["T-new-breach"]
    human = cli("status", SLA_STORE_URL=store_url).stdout
    assert "breaches in the last hour: 1" in human and "T-soon" in human


# -- dlq list / show -------------------------------------------------------------------------


def test_dlq_list_and_show_read_dead_letters_without_losing_them(
    cli: Any, intake: RunningService, upstream: UpstreamPublisher, amqp_url: str, prefix: str
) -> None:
    upstream.publish("chat", b'{"broken', message_id="broken-1")
    upstream.publish("chat", json.dumps({"portal_id": 4411}).encode(), message_id="no-fields")
    wait_for(lambda: dead_depth(amqp_url, prefix) == 2)

    for name in ("intake.inbound", "intake.inbound.dead", f"{prefix}intake.inbound.dead"):
        listed = as_json(cli("dlq", "list", name, "--json"))
        assert listed["depth"] == 2
        by_id = {letter["id"]: letter for letter in listed["dead_letters"]}
        assert by_id["broken-1"]["reason"] == "invalid_json"
        assert by_id["no-fields"]["reason"] == "schema_violation"
        assert by_id["broken-1"]["service"] == "intake"
        assert by_id["broken-1"]["attempts"] == 1
        assert by_id["broken-1"]["original_routing_key"] == "inbound.chat"
    assert dead_depth(amqp_url, prefix) == 2  # read three times, still there

    human = cli("dlq", "list", "intake.inbound")
    assert "invalid_json" in human.stdout and "schema_violation" in human.stdout

    shown = as_json(cli("dlq", "show", "intake.inbound", "broken-1", "--json"))
    assert len(shown) == 1
    assert shown[0]["body"] == '{"broken'
    assert shown[0]["headers"]["x-error-reason"] == "invalid_json"
    assert shown[0]["headers"]["x-original-exchange"] == f"{prefix}support.inbound"
    assert '{"broken' in cli("dlq", "show", "intake.inbound", "broken-1").stdout

    missing = cli("dlq", "show", "intake.inbound", "nope")
    assert missing.exit_code == 1 and "no dead letter with id nope" in missing.stderr
    unknown = cli("dlq", "list", "fax.inbound")
    assert unknown.exit_code == 2 and "unknown queue 'fax.inbound'" in unknown.output
    assert dead_depth(amqp_url, prefix) == 2


# Text any sender controls: Rich markup, an emoji code, ANSI escapes, control characters
# and a bidirectional override. Shown literally; control characters as escapes.
NASTY = "[/] [bold red]x[/] :warning: \x1b[31mred\x1b[0m bell\x07 back\x08 \u202eevil"
SHOWN = ("[/]", "[bold red]x[/]", ":warning:", "\\x1b[31mred\\x1b[0m", "\\x07", "\\u202e")


def assert_literal(output: str) -> None:
    for needle in SHOWN:
        assert needle in output, needle
    for interpreted in ("\x1b", "\x07", "\x08", "\u202e", "\u26a0"):  # \u26a0: the emoji
        assert interpreted not in output, repr(interpreted)


def test_dlq_list_and_show_print_untrusted_text_as_text(
    cli: Any, settings: IntakeSettings, amqp_url: str, prefix: str
) -> None:
    declare_topology(settings)
    body = f"Subject: {NASTY}\n\nline one\n{NASTY}"  # raw text, as a MIME body can be
    letter_id = "[bold]m:warning:[/]"
    headers = {"x-error": f"schema_violation: {NASTY}", "subject": NASTY}
    put_dead_letter(amqp_url, prefix, body.encode(), letter_id, "schema_violation", **headers)

    listed = cli("dlq", "list", "intake.inbound", COLUMNS=None)
    assert listed.exit_code == 0, listed.output
    assert_literal(listed.stdout)
    assert letter_id in listed.stdout

    shown = cli("dlq", "show", "intake.inbound", letter_id, COLUMNS=None)
    assert shown.exit_code == 0, shown.output
    assert_literal(shown.stdout)
    assert shown.stdout.count("[bold red]x[/]") == 5  # error, 2 headers, the body twice
    assert "\nline one\n" in shown.stdout  # a body keeps its lines
    assert dead_depth(amqp_url, prefix) == 1


def test_tables_keep_ids_whole_when_stdout_is_no_terminal(
    cli: Any, settings: IntakeSettings, amqp_url: str, prefix: str, tmp_path: Path
) -> None:
    declare_topology(settings)
    long_id = "upstream-" + "0123456789abcdef" * 4
    put_dead_letter(amqp_url, prefix, b"{}", long_id, "schema_violation")
    listed = cli("dlq", "list", "intake.inbound", COLUMNS=None)
    assert listed.exit_code == 0, listed.output
    assert long_id in listed.stdout
    assert "\u2026" not in listed.stdout  # no ellipsis anywhere

    now = datetime.now(UTC)
    tickets = [f"T-email-{n:016x}" for n in (1, 2)]
    store = ClockStore(engine_for(str(tmp_path / "clocks.db")))
    store.migrate()
    with store.transaction() as conn:
        for ticket, due_in in zip(tickets, (10, 20), strict=True):
            clock = _clock(ticket, now, timedelta(minutes=due_in))
            data = clock.model_dump(mode="json")
            fires = clock.next_fire()
            store.save(
                conn,
                ticket,
                data,
                state="running",
                next_fire_at=fires,
                policy_version="v1",
                now=now,
            )
    store.engine.dispose()
    human = cli("status", SLA_STORE_URL=str(tmp_path / "clocks.db"), COLUMNS=None)
    assert human.exit_code == 0, human.output
    for ticket in tickets:
        assert ticket in human.stdout
    assert "\u2026" not in human.stdout


# -- dlq replay ------------------------------------------------------------------------------


def test_replay_by_id_sends_one_back_to_intake_and_keeps_the_others(
    cli: Any, intake: RunningService, events: Capture, amqp_url: str, prefix: str
) -> None:
    put_dead_letter(amqp_url, prefix, chat("c-fixed"), "fixed-1", "unhandled")
    put_dead_letter(amqp_url, prefix, chat("c-other"), "other-1", "unhandled")

    result = cli("dlq", "replay", "intake.inbound", "--id", "fixed-1")

    assert result.exit_code == 0, result.output
    assert "replayed 1 of 1 chosen; 1 kept" in result.stdout
    wait_for(lambda: len(opened_for(events, "fixed-1")) == 1)
    listed = as_json(cli("dlq", "list", "intake.inbound", "--json"))
    assert [letter["id"] for letter in listed["dead_letters"]] == ["other-1"]
    assert opened_for(events, "other-1") == []


def test_a_replayed_message_starts_fresh(
    cli: Any, intake: RunningService, amqp_url: str, prefix: str
) -> None:
    """Still broken, so it is dead-lettered again: by its new failure, at attempt 1
    (not at the x-delivery-count it carried), with the replay counted."""
    put_dead_letter(amqp_url, prefix, b'{"still broken', "broken-1", "invalid_json")

    assert cli("dlq", "replay", "intake.inbound", "--id", "broken-1").exit_code == 0
    wait_for(lambda: intake.settled("dead_lettered") == 1)

    shown = as_json(cli("dlq", "show", "intake.inbound", "broken-1", "--json"))
    assert len(shown) == 1
    headers = shown[0]["headers"]
    assert headers["x-attempts"] == 1
    assert headers["x-replay-count"] == 1
    assert headers["x-error"].startswith("invalid_json:")
    assert headers["x-error"] != "invalid_json: made by the test"
    assert headers["upstream-trace"] == "kept"
    assert headers["x-publish-token"] != "stale"


def test_replay_by_reason_then_all_including_a_broker_dead_letter(
    cli: Any, intake: RunningService, events: Capture, amqp_url: str, prefix: str
) -> None:
    put_dead_letter(amqp_url, prefix, chat("c-a"), "flaky-a", "unhandled")
    put_dead_letter(amqp_url, prefix, chat("c-b"), "flaky-b", "unhandled")
    death = {
        "count": 1,
        "reason": "delivery_limit",
        "queue": f"{prefix}intake.inbound",
        "time": datetime.now(UTC).replace(microsecond=0),
        "exchange": f"{prefix}support.inbound",
        "routing-keys": ["inbound.chat"],
    }
    put_dead_letter(amqp_url, prefix, chat("c-crash"), "crash-1", "", x_death=[death])

    listed = as_json(cli("dlq", "list", "intake.inbound", "--json"))
    crash = next(x for x in listed["dead_letters"] if x["id"] == "crash-1")
    assert crash["reason"] == "delivery_limit"
    assert crash["original_routing_key"] == "inbound.chat"
    assert crash["original_exchange"] == f"{prefix}support.inbound"

    by_reason = cli("dlq", "replay", "intake.inbound", "--reason", "unhandled")
    assert by_reason.exit_code == 0, by_reason.output
    assert "replayed 2 of 2 chosen; 1 kept" in by_reason.stdout
    wait_for(lambda: bool(opened_for(events, "flaky-a") and opened_for(events, "flaky-b")))
    assert dead_depth(amqp_url, prefix) == 1
    assert opened_for(events, "crash-1") == []

    everything = cli("dlq", "replay", "intake.inbound", "--all")
    assert everything.exit_code == 0, everything.output
    wait_for(lambda: len(opened_for(events, "crash-1")) == 1)
    assert dead_depth(amqp_url, prefix) == 0

    nothing = cli("dlq", "replay", "intake.inbound", "--reason", "unhandled")
    assert nothing.exit_code == 1 and "nothing to replay" in nothing.stderr
    assert cli("dlq", "replay", "intake.inbound").exit_code == 2  # say what to replay


@pytest.fixture
def sla_timer(settings: IntakeSettings, tmp_path: Path) -> Iterator[RunningService]:
    sla_settings = SlaSettings(
        AMQP_URL=settings.amqp_url,
        AMQP_PREFIX=settings.amqp_prefix,
        SLA_STORE_URL=str(tmp_path / "clocks.db"),
        METRICS_PORT=0,
    )
    declare_topology(sla_settings)
    service = RunningService(
        ServiceRunner(sla_bootstrap(sla_settings), sla_settings, RuntimeMetrics.create())
    )
    service.start()
    yield service
    service.stop()


def test_a_replay_reaches_a_service_that_drops_duplicate_inputs(
    cli: Any, sla_timer: RunningService, amqp_url: str, prefix: str
) -> None:
    """sla_timer drops inputs whose message id it handled; one it dead-lettered must
    still be taken again when replayed (else the replay is acked and lost)."""
    conn = pika.BlockingConnection(pika_parameters(amqp_url))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        properties = pika.BasicProperties(message_id="ev-broken", delivery_mode=2)
        channel.basic_publish(
            f"{prefix}support.events", "ticket.opened.standard", b"{}", properties
        )
    finally:
        conn.close()
    wait_for(lambda: dead_depth(amqp_url, prefix, "sla_timer.events") == 1)

    result = cli("dlq", "replay", "sla_timer.events", "--all")

    assert result.exit_code == 0, result.output
    wait_for(lambda: sla_timer.settled("dead_lettered") == 2)
    shown = as_json(cli("dlq", "show", "sla_timer.events.dead", "ev-broken", "--json"))
    assert [x["headers"]["x-replay-count"] for x in shown] == [1]
    assert shown[0]["reason"] == "schema_violation"


# -- dlq purge -------------------------------------------------------------------------------


def test_purge_asks_first_and_deletes_with_yes(
    cli: Any, settings: IntakeSettings, amqp_url: str, prefix: str
) -> None:
    declare_topology(settings)
    put_dead_letter(amqp_url, prefix, b"{}", "one", "schema_violation")
    put_dead_letter(amqp_url, prefix, b"{}", "two", "schema_violation")

    refused = cli("dlq", "purge", "intake.inbound", input="n\n")
    assert refused.exit_code == 1
    assert f"Delete 2 dead letter(s) from {prefix}intake.inbound.dead?" in refused.stdout
    assert dead_depth(amqp_url, prefix) == 2

    purged = cli("dlq", "purge", "intake.inbound.dead", "--yes")
    assert purged.exit_code == 0, purged.output
    assert f"purged 2 dead letter(s) from {prefix}intake.inbound.dead" in purged.stdout
    assert dead_depth(amqp_url, prefix) == 0

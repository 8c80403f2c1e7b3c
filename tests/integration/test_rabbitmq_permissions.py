"""The RabbitMQ users of deploy/rabbitmq/definitions.json, on the real broker.

The file's vhost, users (with their password hashes) and permission regexes are
imported as they are with `rabbitmqctl import_definitions`, under names unique to this
run (vhost `ps-perm-<run>`, users `<user>-<run>`), and deleted afterwards. The users log
in with the passwords docker-compose.yml gives them, so the hashes are checked too.

What it shows: the `upstream` user can publish to support.inbound and nothing else; the
`topology` user can create the whole topology on an empty vhost (the compose one-shot);
each service user can redeclare that topology (as every service does at start), consume
its own queue, publish events and dead letters, and run its real service, but cannot
read another service's queue or publish to support.inbound.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import ParseResult, unquote, urlparse

import pika
import pytest
import yaml
from aiosmtpd.controller import Controller
from pika.exceptions import ChannelClosedByBroker

from services.intake.main import IntakeSettings
from services.intake.main import bootstrap as intake_bootstrap
from services.notifier.main import NotifierSettings
from services.notifier.main import bootstrap as notifier_bootstrap
from services.runtime.app import ServiceRunner, declare_topology
from services.runtime.config import RuntimeSettings
from services.runtime.errors import ConnectionLost
from services.runtime.logging import configure_logging
from services.runtime.metrics import RuntimeMetrics
from services.runtime.names import SERVICES, Names, queues_of
from services.runtime.topology import queues
from services.sla_timer.main import SlaSettings
from services.sla_timer.main import bootstrap as sla_bootstrap
from services.upstream import UpstreamPublisher
from tests.conftest import ROOT
from tests.integration.conftest import RunningService, wait_for
from tests.support.broker import missing
from tests.support.capture import Capture

DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"
COMPOSE = ROOT / "docker-compose.yml"
NAMES = Names("")
ACCESS_REFUSED = 403
# A routing key each service publishes on support.events (DESIGN.md section 1).
OWN_EVENT = {
    "intake": "ticket.opened.business_critical",
    "sla_timer": "sla.breached.business_critical",
    "notifier": "escalation.sent",
}


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"rabbitmqctl {' '.join(args)}: {done.stderr or done.stdout}")
    return done.stdout


def compose_passwords() -> dict[str, str]:
    """user -> password, from every AMQP_URL in docker-compose.yml."""
    compose = yaml.safe_load(COMPOSE.read_text())
    found = {}
    for service in compose["services"].values():
        url = (service.get("environment") or {}).get("AMQP_URL")
        if url:
            parsed = urlparse(url)
            found[unquote(parsed.username or "")] = unquote(parsed.password or "")
    return found


@dataclass
class Broker:
    """One imported copy of definitions.json on the local broker."""

    host: str
    port: int
    guest: tuple[str, str]
    vhost: str
    users: dict[str, str]  # name in definitions.json -> name on the broker
    passwords: dict[str, str]  # name in definitions.json -> password (from compose)
    permissions: dict[str, dict[str, str]]  # name in definitions.json -> its regexes

    def url(self, user: str) -> str:
        return (
            f"amqp://{self.users[user]}:{self.passwords[user]}@{self.host}:{self.port}/{self.vhost}"
        )

    def guest_url(self) -> str:
        return f"amqp://{self.guest[0]}:{self.guest[1]}@{self.host}:{self.port}/{self.vhost}"

    def channel(self, user: str) -> tuple[pika.BlockingConnection, Any]:
        conn = pika.BlockingConnection(pika.URLParameters(self.url(user)))
        return conn, conn.channel()


def _local_broker(amqp_url: str) -> ParseResult:
    parsed = urlparse(amqp_url)
    if shutil.which("rabbitmqctl") is None or parsed.hostname not in ("localhost", "127.0.0.1"):
        missing("needs rabbitmqctl for the broker at AMQP_URL (a local RabbitMQ)")
    return parsed


def import_definitions(run: str, vhost: str) -> tuple[dict[str, str], dict]:
    """Import definitions.json with the vhost and user names made unique to `run`."""
    definitions = json.loads(DEFINITIONS.read_text())
    (file_vhost,) = (v["name"] for v in definitions["vhosts"])
    renamed = {u["name"]: f"{u['name']}-{run}" for u in definitions["users"]}
    copy = {
        "vhosts": [{"name": vhost}],
        "users": [{**u, "name": renamed[u["name"]]} for u in definitions["users"]],
        "permissions": [
            {**p, "user": renamed[p["user"]], "vhost": vhost}
            for p in definitions["permissions"]
            if p["vhost"] == file_vhost
        ],
        "topic_permissions": [
            {**p, "user": renamed[p["user"]], "vhost": vhost}
            for p in definitions.get("topic_permissions", [])
            if p["vhost"] == file_vhost
        ],
    }
    # The CLI may run as the `rabbitmq` user (its wrapper su's when called by root), which
    # cannot read pytest's private tmp dirs; stdin ("-") does not pass through that su.
    with tempfile.TemporaryDirectory(prefix="ps-defs-") as tmp:
        path = Path(tmp) / "definitions.json"
        path.write_text(json.dumps(copy))
        os.chmod(tmp, 0o755)
        os.chmod(path, 0o644)
        rabbitmqctl("import_definitions", str(path))
    permissions = {
        p["user"]: {k: p[k] for k in ("configure", "write", "read")}
        for p in definitions["permissions"]
        if p["vhost"] == file_vhost
    }
    return renamed, permissions


@pytest.fixture(scope="module")
def broker(amqp_url: str) -> Iterator[Broker]:
    parsed = _local_broker(amqp_url)
    run = uuid.uuid4().hex[:8]
    vhost = f"ps-perm-{run}"
    users: dict[str, str] = {}
    try:
        users, permissions = import_definitions(run, vhost)
        guest = (unquote(parsed.username or "guest"), unquote(parsed.password or "guest"))
        rabbitmqctl("set_permissions", "-p", vhost, guest[0], ".*", ".*", ".*")
        b = Broker(
            parsed.hostname or "127.0.0.1",
            parsed.port or 5672,
            guest,
            vhost,
            users,
            compose_passwords(),
            permissions,
        )
        configure_logging("console", "warning")
        declare_topology(RuntimeSettings(AMQP_URL=b.guest_url(), METRICS_PORT=0))
        yield b
    finally:
        for name in users.values():
            rabbitmqctl("delete_user", name)
        if vhost in rabbitmqctl("list_vhosts", "name").split():
            rabbitmqctl("delete_vhost", vhost)


@pytest.fixture
def empty_vhost(broker: Broker) -> Iterator[Callable[[str], str]]:
    """Makes a second, empty vhost where `user` has the file's permissions."""
    made: list[str] = []

    def make(user: str) -> str:
        vhost = f"ps-empty-{uuid.uuid4().hex[:8]}"
        rabbitmqctl("add_vhost", vhost)
        made.append(vhost)
        perms = broker.permissions[user]
        rabbitmqctl(
            "set_permissions",
            "-p",
            vhost,
            broker.users[user],
            perms["configure"],
            perms["write"],
            perms["read"],
        )
        return vhost

    yield make
    for vhost in made:
        rabbitmqctl("delete_vhost", vhost)


def guest_get(broker: Broker, queue: str) -> list[tuple[str, bytes]]:
    """Take every message in `queue`: (the routing key it was published with, body)."""
    conn = pika.BlockingConnection(pika.URLParameters(broker.guest_url()))
    try:
        ch = conn.channel()
        taken = []
        while True:
            method, _, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                return taken
            taken.append((method.routing_key, body))
    finally:
        conn.close()


def guest_purge(broker: Broker, names: list[str]) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(broker.guest_url()))
    try:
        ch = conn.channel()
        for queue in names:
            ch.queue_purge(queue)
    finally:
        conn.close()


def refused(broker: Broker, user: str, action: str, *args: object) -> str:
    """Run one channel method as `user`; return the broker's 403 reply text."""
    conn, ch = broker.channel(user)
    try:
        if action == "publish":
            ch.confirm_delivery()
        with pytest.raises(ChannelClosedByBroker) as closed:
            if action == "publish":
                exchange, key = args
                ch.basic_publish(exchange, key, b"{}", pika.BasicProperties(delivery_mode=2))
            elif action == "get":
                ch.basic_get(args[0], auto_ack=False)
            elif action == "consume":
                ch.basic_consume(args[0], lambda *_: None)
            elif action == "declare":
                ch.queue_declare(args[0], durable=True)
            else:
                raise AssertionError(action)
        assert closed.value.reply_code == ACCESS_REFUSED, closed.value
        return str(closed.value.reply_text)
    finally:
        if conn.is_open:
            conn.close()


def publish_confirmed(broker: Broker, user: str, exchange: str, key: str, body: bytes) -> None:
    conn, ch = broker.channel(user)
    try:
        ch.confirm_delivery()  # raises if the broker nacks or closes the channel
        ch.basic_publish(exchange, key, body, pika.BasicProperties(delivery_mode=2))
    finally:
        conn.close()


def all_queues() -> list[str]:
    return [q.name for q in queues(NAMES, RuntimeSettings(AMQP_URL="amqp://x@y//"))]


# -- every user of the file, with the password compose gives it --------------------------


def test_every_user_compose_uses_logs_in_with_its_compose_password(broker: Broker) -> None:
    assert set(broker.passwords) <= set(broker.users), "compose uses a user the file lacks"
    for user in broker.passwords:
        conn = pika.BlockingConnection(pika.URLParameters(broker.url(user)))
        assert conn.is_open
        conn.close()


# -- upstream ---------------------------------------------------------------------------


def test_upstream_publishes_to_support_inbound_with_confirms(broker: Broker) -> None:
    body = (ROOT / "examples" / "inbound" / "chat.json").read_bytes()
    with UpstreamPublisher(broker.url("upstream")) as upstream:  # confirm_delivery on
        upstream.publish("chat", body)
        # An unknown routing key is confirmed too and kept by the alternate exchange:
        # upstream needs no right on support.inbound.unrouted for that.
        upstream.publish("chat", b'{"lost": true}', routing_key="inbound.fax")
    # Confirmed means the queues have it: intake's queue and, for the unknown key, the
    # alternate exchange's.
    assert guest_get(broker, NAMES.queue("intake")) == [("inbound.chat", body)]
    assert guest_get(broker, NAMES.unrouted_queue) == [("inbound.fax", b'{"lost": true}')]


@pytest.mark.parametrize("exchange", [NAMES.events_exchange, NAMES.unrouted_exchange, ""])
def test_upstream_cannot_publish_anywhere_else(broker: Broker, exchange: str) -> None:
    # "" is the default exchange: publishing there would put messages into any queue.
    text = refused(broker, "upstream", "publish", exchange, "ticket.opened.standard")
    assert "ACCESS_REFUSED" in text
    assert f"'{exchange or 'amq.default'}'" in text


def test_upstream_cannot_read_any_queue(broker: Broker) -> None:
    for queue in all_queues():
        assert "ACCESS_REFUSED" in refused(broker, "upstream", "get", queue), queue
    assert "ACCESS_REFUSED" in refused(broker, "upstream", "consume", NAMES.queue("intake"))


def test_upstream_cannot_declare_anything(broker: Broker) -> None:
    assert "ACCESS_REFUSED" in refused(broker, "upstream", "declare", NAMES.queue("intake"))
    assert "ACCESS_REFUSED" in refused(broker, "upstream", "declare", "upstream.own")


# -- topology: the compose one-shot ---------------------------------------------------------


def test_topology_user_creates_the_whole_topology_on_an_empty_vhost(
    broker: Broker, empty_vhost: Callable[[str], str]
) -> None:
    vhost = empty_vhost("topology")
    url = broker.url("topology").rsplit("/", 1)[0] + f"/{vhost}"
    settings = RuntimeSettings(AMQP_URL=url, METRICS_PORT=0)
    declared = declare_topology(settings)
    assert declared == all_queues()
    assert declare_topology(settings) == declared  # idempotent, as compose may rerun it
    listed = rabbitmqctl("list_queues", "-p", vhost, "name", "type").split("\n")
    types = dict(line.split("\t") for line in listed if "\t" in line)
    assert types[NAMES.event_log] == "stream"
    assert types[NAMES.queue("intake")] == "quorum"


@pytest.mark.parametrize("service", SERVICES)
def test_service_users_cannot_create_the_topology_so_compose_runs_the_one_shot_first(
    broker: Broker, empty_vhost: Callable[[str], str], service: str
) -> None:
    url = broker.url(service).rsplit("/", 1)[0] + f"/{empty_vhost(service)}"
    with pytest.raises(ConnectionLost, match="ACCESS_REFUSED"):
        declare_topology(RuntimeSettings(AMQP_URL=url, METRICS_PORT=0))


# -- the services ---------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_service_user_redeclares_consumes_and_publishes(broker: Broker, service: str) -> None:
    # What every service does at start: declare the (existing) topology.
    declared = declare_topology(RuntimeSettings(AMQP_URL=broker.url(service), METRICS_PORT=0))
    assert declared == all_queues()

    conn, ch = broker.channel(service)
    try:
        for key in queues_of(service):  # would close the channel with 403
            ch.basic_consume(NAMES.queue(key), lambda *_: None)
        ch.confirm_delivery()
        event = json.dumps({"id": f"perm-{service}"}).encode()
        ch.basic_publish(NAMES.events_exchange, OWN_EVENT[service], event)
        # Dead letters go through the default exchange to `<queue>.dead`.
        ch.basic_publish("", NAMES.dead_letter_queue(service), b"dead")
    finally:
        conn.close()
    dead = NAMES.dead_letter_queue(service)
    assert guest_get(broker, dead) == [(dead, b"dead")]


@pytest.mark.parametrize("service", SERVICES)
def test_service_user_cannot_read_other_queues_or_act_as_upstream(
    broker: Broker, service: str
) -> None:
    own = [NAMES.queue(key) for key in queues_of(service)]
    others = [q for q in all_queues() if q not in own]
    assert NAMES.dead_letter_queue(service) in others  # dead letters are for operators
    for queue in others:
        text = refused(broker, service, "get", queue)
        assert f"queue '{queue}'" in text, text
    text = refused(broker, service, "publish", NAMES.inbound_exchange, "inbound.chat")
    assert f"exchange '{NAMES.inbound_exchange}'" in text


@pytest.mark.parametrize("service", SERVICES)
def test_service_user_cannot_publish_another_services_events(broker: Broker, service: str) -> None:
    # Topic permissions on support.events: intake cannot fake a breach (which pages
    # people), sla_timer cannot open tickets, the notifier cannot do either.
    for other, key in OWN_EVENT.items():
        if other != service:
            text = refused(broker, service, "publish", NAMES.events_exchange, key)
            assert f"topic '{key}'" in text, text


@dataclass
class MailSink:
    """An SMTP server standing in for Mailpit: keeps the recipients of every message."""

    recipients: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.recipients.extend(envelope.rcpt_tos)
        return "250 OK"


@pytest.fixture
def mailpit() -> Iterator[tuple[MailSink, int]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    sink = MailSink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


def test_the_services_run_end_to_end_under_their_users(
    broker: Broker, tmp_path: Path, mailpit: tuple[MailSink, int]
) -> None:
    """intake, sla_timer and notifier, each as its own user with compose's config files,
    on a chat and a business-critical email from upstream: the email pages level 1."""
    sink, smtp_port = mailpit
    # What the other tests left in the service queues (their probe events) goes first.
    guest_purge(broker, NAMES.service_queues())
    events = Capture.bind(broker.guest_url(), "perm.capture", NAMES.events_exchange)
    common = {"METRICS_PORT": 0, "RETRY_INITIAL_S": 0.05, "RETRY_MAX_S": 0.2}
    intake = IntakeSettings(
        AMQP_URL=broker.url("intake"),
        ACCOUNTS_FILE=ROOT / "examples" / "accounts.yaml",
        **common,
    )
    sla = SlaSettings(
        AMQP_URL=broker.url("sla_timer"),
        SLA_STORE_URL=str(tmp_path / "clocks.db"),
        POLICY_FILE=ROOT / "examples" / "policy.yaml",
        **common,
    )
    notifier = NotifierSettings(
        AMQP_URL=broker.url("notifier"),
        ONCALL_FILE=ROOT / "deploy" / "oncall.yaml",
        NOTIFIER_STORE_URL=str(tmp_path / "notifier.db"),
        POLICY_FILE=ROOT / "examples" / "policy.yaml",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=smtp_port,
        **common,
    )
    running = [
        RunningService(ServiceRunner(spec, settings, RuntimeMetrics.create()))
        for spec, settings in (
            (intake_bootstrap(intake), intake),
            (sla_bootstrap(sla), sla),
            (notifier_bootstrap(notifier), notifier),
        )
    ]
    try:
        for service in running:
            service.start()  # declared the topology and consumes, as its own user
        # The examples, sent just now: their clocks are far from a warning or breach.
        now = datetime.now(UTC).isoformat()
        run = uuid.uuid4().hex[:8]
        chat = json.loads((ROOT / "examples" / "inbound" / "chat.json").read_text())
        chat |= {"conversation_id": f"c-perm-{run}", "started_at": now}
        chat["messages"][0]["at"] = now
        email = json.loads((ROOT / "examples" / "inbound" / "email.json").read_text())
        email |= {"message_id": f"<perm-{run}@mail.acme.example>", "received_at": now}
        assert email["form"]["business_critical"] is True
        with UpstreamPublisher(broker.url("upstream")) as upstream:
            upstream.publish("chat", json.dumps(chat).encode())
            upstream.publish("email", json.dumps(email).encode())

        def seen_all() -> bool:
            seen = [r.routing_key for r in events.drain()]
            scheduled = sum(k.startswith("sla.scheduled.") for k in seen)
            return "escalation.sent" in seen and scheduled >= 2

        wait_for(seen_all, timeout=30)
        seen = [r.routing_key for r in events.drain()]
        assert seen.count("ticket.opened.business_critical") == 1, seen
        assert seen.count("ticket.opened.standard") == 1, seen
        assert sum(k.startswith("sla.scheduled.") for k in seen) == 2, seen
        oncall = yaml.safe_load((ROOT / "deploy" / "oncall.yaml").read_text())
        assert sink.recipients and set(sink.recipients) <= {p["email"] for p in oncall["people"]}
        for service in running:
            assert service.settled("dead_lettered") == 0, service.runner.spec.name
            assert service.runner.loop.connected, service.runner.spec.name
    finally:
        stoppers = [threading.Thread(target=s.stop) for s in running if s.thread.is_alive()]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join(timeout=30)

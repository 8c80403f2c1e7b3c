"""The RabbitMQ users of deploy/rabbitmq/definitions.json, on the real broker.

The file is imported as it is into a vhost of this run (tests/support/rabbit_users.py)
and the `topology` user declares the topology there, as the compose one-shot does.

What it shows: `upstream` can publish to support.inbound and nothing else; `topology`
can create the whole topology on an empty vhost; each service user passes the passive
check its service makes at start (DECLARE_TOPOLOGY=passive), consumes its own queues,
publishes its own events and, through its queues' dead-letter exchanges, its own dead
letters, and runs its real service. Each is refused (403): the default exchange (a
forged event straight into another service's queue), another service's dead-letter
exchange or events, support.inbound, declaring, deleting, binding or reading another
service's queue. Dead-lettering and retries work under the service users, and so does
the broker's own dead-lettering past the delivery limit.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pika
import pytest
import yaml
from aiosmtpd.controller import Controller

from services.intake.main import IntakeSettings
from services.intake.main import bootstrap as intake_bootstrap
from services.notifier.main import NotifierSettings
from services.notifier.main import bootstrap as notifier_bootstrap
from services.runtime.app import (
    ServiceRunner,
    ServiceSpec,
    check_topology,
    declare_topology,
    run_services,
)
from services.runtime.config import RuntimeSettings
from services.runtime.errors import ConnectionLost, TransientError
from services.runtime.logging import configure_logging
from services.runtime.messages import Inbound, Outgoing
from services.runtime.metrics import RuntimeMetrics
from services.runtime.names import SERVICE_BINDINGS, SERVICES, Names, queues_of
from services.runtime.topology import TopologyMissing, queues
from services.sla_timer.main import SlaSettings
from services.sla_timer.main import bootstrap as sla_bootstrap
from services.upstream import UpstreamPublisher
from tests.conftest import ROOT
from tests.integration.conftest import RunningService, wait_for
from tests.support.capture import Capture
from tests.support.rabbit_users import (
    Broker,
    guest_get,
    guest_purge,
    import_definitions,
    local_broker,
    rabbitmqctl,
    refused,
)

NAMES = Names("")
ACCOUNTS = ROOT / "examples" / "accounts.yaml"
# A routing key each service publishes on support.events (DESIGN.md section 1).
OWN_EVENT = {
    "intake": "ticket.opened.business_critical",
    "sla_timer": "sla.breached.business_critical",
    "notifier": "escalation.sent",
}
DLX_NAMES = [NAMES.dead_letter_exchange(key) for key in SERVICE_BINDINGS]


@pytest.fixture(scope="module")
def broker(amqp_url: str) -> Iterator[Broker]:
    parsed = local_broker(amqp_url)
    run = uuid.uuid4().hex[:8]
    vhost = f"ps-perm-{run}"
    users: dict[str, str] = {}
    try:
        imported = import_definitions(run, vhost)
        users = imported.users
        guest = (unquote(parsed.username or "guest"), unquote(parsed.password or "guest"))
        rabbitmqctl("set_permissions", "-p", vhost, guest[0], ".*", ".*", ".*")
        b = Broker(
            parsed.hostname or "127.0.0.1",
            parsed.port or 5672,
            guest,
            vhost,
            users,
            imported.passwords,
            imported.permissions,
        )
        configure_logging("console", "warning")
        # What compose's one-shot does before any service starts.
        declare_topology(RuntimeSettings(AMQP_URL=b.url("topology"), METRICS_PORT=0))
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


def passive(broker: Broker, user: str, vhost: str | None = None, **extra: Any) -> dict[str, Any]:
    """Settings of a service running as `user` the way compose runs it."""
    fast = {"RETRY_INITIAL_S": 0.05, "RETRY_MAX_S": 0.2}
    return {
        "AMQP_URL": broker.url(user, vhost),
        "DECLARE_TOPOLOGY": "passive",
        "METRICS_PORT": 0,
        **fast,
        **extra,
    }


def all_queues() -> list[str]:
    return [q.name for q in queues(NAMES, RuntimeSettings(AMQP_URL="amqp://x@y//"))]


def plain_queues() -> list[str]:
    """Every queue but the stream, which has no basic.get and no purge."""
    return [q for q in all_queues() if q != NAMES.event_log]


def own_queues(service: str) -> list[str]:
    return [NAMES.queue(key) for key in queues_of(service)]


# -- every user of the file ------------------------------------------------------------


def test_every_user_logs_in_with_the_password_its_hash_was_made_from(broker: Broker) -> None:
    for user in broker.users:
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


@pytest.mark.parametrize(
    "exchange", [NAMES.events_exchange, NAMES.unrouted_exchange, "", *DLX_NAMES]
)
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
    settings = RuntimeSettings(AMQP_URL=broker.url("topology", vhost), METRICS_PORT=0)
    declared = declare_topology(settings)
    assert declared == all_queues()
    assert declare_topology(settings) == declared  # idempotent, as compose may rerun it
    listed = rabbitmqctl("list_queues", "-p", vhost, "name", "type").split("\n")
    types = dict(line.split("\t") for line in listed if "\t" in line)
    assert types[NAMES.event_log] == "stream"
    assert types[NAMES.queue("intake")] == "quorum"
    # The `.dlx` -> `.dead` bindings: the fixture's vhost was declared by this user too,
    # and test_service_user_passes_the_passive_check... publishes through them.


@pytest.mark.parametrize("service", SERVICES)
def test_service_users_cannot_create_the_topology_so_compose_runs_the_one_shot_first(
    broker: Broker, empty_vhost: Callable[[str], str], service: str
) -> None:
    url = broker.url(service, empty_vhost(service))
    with pytest.raises(ConnectionLost, match="ACCESS_REFUSED"):
        declare_topology(RuntimeSettings(AMQP_URL=url, METRICS_PORT=0))


# -- what a service user may do ---------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_service_user_passes_the_passive_check_consumes_and_publishes(
    broker: Broker, service: str
) -> None:
    # What every service does at start with DECLARE_TOPOLOGY=passive: no right needed.
    check_topology(RuntimeSettings(**passive(broker, service)), queues_of(service))

    conn, ch = broker.channel(service)
    try:
        for queue in own_queues(service):  # would close the channel with 403
            ch.basic_consume(queue, lambda *_: None)
        ch.confirm_delivery()
        event = json.dumps({"id": f"perm-{service}"}).encode()
        ch.basic_publish(NAMES.events_exchange, OWN_EVENT[service], event)
        for key in queues_of(service):  # dead letters: through the queue's own exchange
            dead = NAMES.dead_letter_queue(key)
            ch.basic_publish(NAMES.dead_letter_exchange(key), dead, b"dead", mandatory=True)
    finally:
        conn.close()
    for key in queues_of(service):
        dead = NAMES.dead_letter_queue(key)
        assert guest_get(broker, dead) == [(dead, b"dead")]


# -- what a service user is refused -----------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_service_user_cannot_forge_events_through_the_default_exchange(
    broker: Broker, service: str
) -> None:
    """The default exchange routes to any queue by name: an intake that could write it
    would put a forged sla.breached straight into the notifier's queue (a page)."""
    guest_purge(broker, plain_queues())
    for queue in all_queues():  # its own queues too: only support.events is for events
        text = refused(broker, service, "publish", "", queue)
        assert "exchange 'amq.default'" in text, text
    assert [q for q in plain_queues() if guest_get(broker, q)] == []  # nothing got in


@pytest.mark.parametrize("service", SERVICES)
def test_service_user_cannot_write_another_services_dead_letters(
    broker: Broker, service: str
) -> None:
    mine = {NAMES.dead_letter_exchange(key) for key in queues_of(service)}
    for exchange in set(DLX_NAMES) - mine:
        text = refused(broker, service, "publish", exchange, exchange.replace(".dlx", ".dead"))
        assert f"exchange '{exchange}'" in text, text


@pytest.mark.parametrize("service", SERVICES)
def test_service_user_cannot_declare_delete_or_bind(broker: Broker, service: str) -> None:
    (own, *_) = own_queues(service)
    # Not even a redeclare of its own queue, equal to what exists (the old start-up).
    (existing,) = [q for q in queues(NAMES, RuntimeSettings()) if q.name == own]
    for args in ((own, existing.queue_arguments), (f"{service}.own",)):
        assert f"queue '{args[0]}'" in refused(broker, service, "declare", *args)
    text = refused(broker, service, "declare_exchange", NAMES.events_exchange)
    assert f"exchange '{NAMES.events_exchange}'" in text
    for queue in all_queues():  # another service's queue, and its own
        assert f"queue '{queue}'" in refused(broker, service, "delete", queue), queue
    text = refused(broker, service, "delete_exchange", NAMES.events_exchange)
    assert f"exchange '{NAMES.events_exchange}'" in text
    # A binding would copy every event into its queue (or another's).
    text = refused(broker, service, "bind", own, NAMES.events_exchange, "#")
    assert "ACCESS_REFUSED" in text


@pytest.mark.parametrize("service", SERVICES)
def test_service_user_cannot_read_other_queues_or_act_as_upstream(
    broker: Broker, service: str
) -> None:
    others = [q for q in all_queues() if q not in own_queues(service)]
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


# -- the services under their users -------------------------------------------------------


def test_a_service_without_its_topology_stops_with_one_line_naming_what_is_missing(
    broker: Broker, empty_vhost: Callable[[str], str]
) -> None:
    vhost = empty_vhost("intake")
    settings = IntakeSettings(**passive(broker, "intake", vhost), ACCOUNTS_FILE=ACCOUNTS)
    started = time.monotonic()
    with pytest.raises(SystemExit) as stopped:
        run_services([intake_bootstrap(settings)], settings, install_signals=False)
    message = str(stopped.value)
    assert "\n" not in message
    assert f"queue {NAMES.queue('intake')}" in message, message
    assert f"exchange {NAMES.dead_letter_exchange('intake')}" in message, message
    assert "run `premium-support topology declare`" in message, message
    assert time.monotonic() - started < 15  # not retried: nothing intake may do creates it
    with pytest.raises(TopologyMissing):  # the check as such, without the runner
        check_topology(settings, ("intake",))


def test_intake_dead_letters_a_permanent_error_with_its_reason_under_its_user(
    broker: Broker,
) -> None:
    dead = NAMES.dead_letter_queue("intake")
    guest_purge(broker, [NAMES.queue("intake"), dead])
    settings = IntakeSettings(**passive(broker, "intake"), ACCOUNTS_FILE=ACCOUNTS)
    service = RunningService(
        ServiceRunner(intake_bootstrap(settings), settings, RuntimeMetrics.create())
    )
    service.start()
    try:
        with UpstreamPublisher(broker.url("upstream")) as upstream:
            upstream.publish("chat", b"{not json", message_id="perm-bad-json")
        (letter,) = Capture(broker.guest_url(), dead).take(1, settle=0.2)
        wait_for(lambda: service.settled("dead_lettered") == 1)
    finally:
        service.stop()
    assert (letter.routing_key, letter.body, letter.message_id) == (
        dead,
        b"{not json",
        "perm-bad-json",
    )
    assert letter.headers["x-error-reason"] == "invalid_json"
    assert letter.headers["x-service"] == "intake"
    assert letter.headers["x-original-queue"] == NAMES.queue("intake")


def test_retries_then_dead_letters_run_under_a_service_user(broker: Broker) -> None:
    """The runtime's retry (the delivery held, handled again after a backoff) and its
    dead letter after MAX_ATTEMPTS, in a consume loop logged in as `intake`."""
    dead = NAMES.dead_letter_queue("intake")
    guest_purge(broker, [NAMES.queue("intake"), dead])
    calls: Counter[bytes] = Counter()
    run = uuid.uuid4().hex[:8]

    def handle(inbound: Inbound) -> list[Outgoing]:
        calls[inbound.body] += 1
        if inbound.body == b"down" or calls[inbound.body] == 1:
            raise TransientError(f"attempt {calls[inbound.body]} of {inbound.body!r} failed")
        return [Outgoing(NAMES.events_exchange, "ticket.updated", b"{}", f"perm-retry-{run}")]

    captured = Capture.bind(
        broker.guest_url(), "perm.retry.capture", NAMES.events_exchange, ("ticket.updated",)
    )
    settings = RuntimeSettings(**passive(broker, "intake", MAX_ATTEMPTS=3))
    spec = ServiceSpec(name="intake", handlers={"inbound.chat": handle})
    service = RunningService(ServiceRunner(spec, settings, RuntimeMetrics.create())).start()
    try:
        with UpstreamPublisher(broker.url("upstream")) as upstream:
            upstream.publish("chat", b"flaky")
            upstream.publish("chat", b"down")
        (letter,) = Capture(broker.guest_url(), dead).take(1, settle=0.2)
        (event,) = captured.take(1, settle=0.2)
    finally:
        service.stop()
    assert calls == {b"flaky": 2, b"down": 3}
    assert event.message_id == f"perm-retry-{run}"
    assert letter.body == b"down"
    assert (letter.headers["x-error-reason"], letter.headers["x-attempts"]) == ("transient", 3)


def test_the_broker_dead_letters_past_the_delivery_limit_under_a_service_user(
    broker: Broker,
) -> None:
    """A message that keeps coming back (a consumer that crashes on it) is dead-lettered
    by the broker itself after DELIVERY_LIMIT returns, though no service user may write
    the default exchange that x-dead-letter-exchange names: the broker checks no rights."""
    queue, dead = NAMES.queue("intake"), NAMES.dead_letter_queue("intake")
    guest_purge(broker, [queue, dead])
    with UpstreamPublisher(broker.url("upstream")) as upstream:
        upstream.publish("chat", b"poison", message_id="perm-poison")
    conn, ch = broker.channel("intake")
    returned, deadline = 0, time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            method, _, _ = ch.basic_get(queue, auto_ack=False)
            if method is not None:
                ch.basic_nack(method.delivery_tag, requeue=True)
                returned += 1
            elif ch.queue_declare(dead, passive=True).method.message_count:
                break
            else:
                time.sleep(0.02)  # the return is on its way back to the queue
    finally:
        conn.close()
    (letter,) = Capture(broker.guest_url(), dead).take(1)
    assert letter.body == b"poison" and letter.message_id == "perm-poison"
    assert letter.headers["x-first-death-reason"] == "delivery_limit"
    limit = RuntimeSettings().delivery_limit
    assert limit <= returned <= limit + 1


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
    intake = IntakeSettings(**passive(broker, "intake"), ACCOUNTS_FILE=ACCOUNTS)
    sla = SlaSettings(
        **passive(broker, "sla_timer"),
        SLA_STORE_URL=str(tmp_path / "clocks.db"),
        POLICY_FILE=ROOT / "examples" / "policy.yaml",
    )
    notifier = NotifierSettings(
        **passive(broker, "notifier"),
        ONCALL_FILE=ROOT / "deploy" / "oncall.yaml",
        NOTIFIER_STORE_URL=str(tmp_path / "notifier.db"),
        POLICY_FILE=ROOT / "examples" / "policy.yaml",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=smtp_port,
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
            service.start()  # checked the topology passively and consumes, as its own user
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
            # examples/policy.yaml: first response and resolution for each ticket
            return "escalation.sent" in seen and scheduled >= 4

        wait_for(seen_all, timeout=30)
        seen = [r.routing_key for r in events.drain()]
        assert seen.count("ticket.opened.business_critical") == 1, seen
        assert seen.count("ticket.opened.standard") == 1, seen
        assert sum(k.startswith("sla.scheduled.") for k in seen) == 4, seen
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

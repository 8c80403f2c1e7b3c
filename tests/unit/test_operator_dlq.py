"""The pure parts of the operator tools: endpoints, queue names, dead letters, replays."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.operator.config import amqp_vhost, management_endpoint, safe_amqp_url
from services.operator.dlq import from_delivery, replay_message, resolve_dead_letter_queue, select
from services.runtime.names import Names

RUNTIME_HEADERS = {
    "x-error": "invalid_json: Expecting value",
    "x-error-reason": "invalid_json",
    "x-service": "intake",
    "x-attempts": 1,
    "x-first-failure-at": "2026-11-27T10:00:00+00:00",
    "x-last-failure-at": "2026-11-27T10:00:01+00:00",
    "x-original-exchange": "p.support.inbound",
    "x-original-routing-key": "inbound.chat",
    "x-original-queue": "p.intake.inbound",
    "x-delivery-count": 3,
    "x-publish-token": "123-4",
    "trace": "abc",
}


def letter(headers: dict[str, Any], message_id: str | None = "m-1", body: bytes = b"{}") -> Any:
    props = {"message_id": message_id, "content_type": "application/json"}
    return from_delivery(props, headers, body, redelivered=True)


def test_management_endpoint_is_derived_from_the_amqp_url() -> None:
    endpoint = management_endpoint("amqp://ops:s3cret@rabbit.internal:5672//", None)
    assert endpoint.base_url == "http://rabbit.internal:15672"
    assert (endpoint.username, endpoint.password, endpoint.vhost) == ("ops", "s3cret", "/")
    tls = management_endpoint("amqps://rabbit.internal:5671/prod", None)
    assert (tls.base_url, tls.username, tls.vhost) == (
        "https://rabbit.internal:15671",
        "guest",
        "prod",
    )


def test_management_url_overrides_host_and_credentials() -> None:
    endpoint = management_endpoint("amqp://a:b@h//", "https://admin:pw@mgmt.example:443/rabbit/")
    assert endpoint.base_url == "https://mgmt.example:443/rabbit"
    assert (endpoint.username, endpoint.password) == ("admin", "pw")
    assert management_endpoint("amqp://a:b@h//", "http://mgmt:15672").username == "a"


@pytest.mark.parametrize(
    ("url", "vhost"),
    [("amqp://h//", "/"), ("amqp://h/%2F", "/"), ("amqp://h", "/"), ("amqp://h/prod", "prod")],
)
def test_vhost(url: str, vhost: str) -> None:
    assert amqp_vhost(url) == vhost


def test_safe_url_drops_only_the_password() -> None:
    assert safe_amqp_url("amqp://ops:s3cret@h:5672//") == "amqp://ops@h:5672//"
    assert safe_amqp_url("amqp://h:5672//") == "amqp://h:5672//"


@pytest.mark.parametrize(
    "given",
    [
        "intake.inbound",
        "intake.inbound.dead",
        "p.intake.inbound",
        "p.intake.inbound.dead",
        "intake",
    ],
)
def test_queue_names_resolve_to_the_dead_letter_queue(given: str) -> None:
    assert resolve_dead_letter_queue(Names("p."), given) == "p.intake.inbound.dead"


def test_unknown_queue_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"choose one of intake\.inbound, sla_timer\.events"):
        resolve_dead_letter_queue(Names(""), "support.unrouted")


def test_a_runtime_dead_letter() -> None:
    dead = letter(RUNTIME_HEADERS)
    assert (dead.id, dead.reason, dead.service, dead.attempts, dead.reads) == (
        "m-1",
        "invalid_json",
        "intake",
        1,
        3,
    )
    assert (dead.original_exchange, dead.original_routing_key) == (
        "p.support.inbound",
        "inbound.chat",
    )


def test_a_broker_dead_letter_reads_x_death_oldest_entry() -> None:
    when = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    deaths = [
        {"reason": "rejected", "queue": "p.later", "exchange": "", "routing-keys": ["p.later"]},
        {
            "reason": "delivery_limit",
            "queue": "p.intake.inbound",
            "time": when,
            "exchange": "p.support.inbound",
            "routing-keys": ["inbound.email"],
        },
    ]
    dead = letter({"x-death": deaths})
    assert (dead.reason, dead.original_routing_key) == ("delivery_limit", "inbound.email")
    assert dead.original_queue == "p.intake.inbound"
    assert dead.last_failure_at == when.isoformat()
    assert "dead-lettered by the broker" in dead.error
    assert dead.detail()["headers"]["x-death"][1]["time"] == when.isoformat()


def test_without_a_message_id_the_id_is_stable_and_distinct() -> None:
    first = letter(RUNTIME_HEADERS, message_id="", body=b"a")
    assert first.id == letter(RUNTIME_HEADERS, message_id=None, body=b"a").id
    assert first.id.startswith("d-")
    assert first.id != letter(RUNTIME_HEADERS, message_id=None, body=b"b").id


def test_replay_keeps_the_message_and_drops_the_failure_record() -> None:
    out = replay_message(letter(RUNTIME_HEADERS), now=datetime(2026, 11, 27, tzinfo=UTC))
    assert (out.exchange, out.routing_key, out.message_id) == (
        "p.support.inbound",
        "inbound.chat",
        "m-1",
    )
    assert out.content_type == "application/json" and out.body == b"{}" and out.mandatory
    assert out.headers == {
        "trace": "abc",
        "x-replay-count": 1,
        "x-replayed-at": "2026-11-27T00:00:00+00:00",
    }
    again = replay_message(letter(RUNTIME_HEADERS | {"x-replay-count": 1}))
    assert again.headers["x-replay-count"] == 2


def test_replay_needs_somewhere_to_go() -> None:
    with pytest.raises(ValueError, match="no original exchange"):
        replay_message(letter({"x-error-reason": "invalid_json"}))


def test_select_by_id_or_reason_or_everything() -> None:
    a = letter(RUNTIME_HEADERS, message_id="a")
    b = letter(RUNTIME_HEADERS | {"x-error-reason": "oversize"}, message_id="b")
    c = letter(RUNTIME_HEADERS, message_id="c")
    assert select([a, b, c], ["a"], ["oversize"], False) == [a, b]
    assert select([a, b, c], [], [], True) == [a, b, c]
    assert select([a, b, c], ["zzz"], [], False) == []

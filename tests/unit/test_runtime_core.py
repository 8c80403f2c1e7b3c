"""The runtime's pure parts: the ack decision, backoff, dedup window, names, masking."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from services.runtime.config import RuntimeSettings
from services.runtime.dedup import DedupWindow
from services.runtime.errors import ConfirmUnknown, PermanentError, TransientError
from services.runtime.failures import Backoff, dead_letter, decide
from services.runtime.logging import configure_logging, mask_text
from services.runtime.messages import Inbound
from services.runtime.names import Names, dead_letter_exchange_by_queue
from services.runtime.topology import queues


def test_permanent_errors_are_dead_lettered_at_once() -> None:
    decision = decide(PermanentError("bad json", reason="invalid_json"), 1, 5)
    assert decision.action == "dead_letter"
    assert decision.error.reason == "invalid_json"


def test_transient_errors_retry_until_the_attempts_run_out() -> None:
    assert [decide(TransientError("x"), n, 3).action for n in (1, 2, 3)] == [
        "retry",
        "retry",
        "dead_letter",
    ]
    assert decide(ConfirmUnknown("no confirm"), 1, 3).action == "retry"


def test_unknown_exceptions_are_bounded_retries_with_their_type_in_the_reason() -> None:
    decision = decide(KeyError("ticket"), 1, 3)
    assert decision.action == "retry"
    assert decision.error.reason == "unhandled"
    assert "KeyError" in str(decision.error)
    assert decide(KeyError("ticket"), 3, 3).action == "dead_letter"


@given(st.integers(min_value=1, max_value=60))
def test_backoff_grows_and_stays_bounded(attempt: int) -> None:
    backoff = Backoff(initial_s=0.5, max_s=30.0)
    delay = backoff.delay_s(attempt)
    assert 0 < delay <= 30.0 + 0.5  # max plus at most one jitter


def test_backoff_is_exponential_before_the_cap() -> None:
    backoff = Backoff(initial_s=1.0, max_s=1000.0)
    assert 1.0 <= backoff.delay_s(1) <= 2.0
    assert 8.0 <= backoff.delay_s(4) <= 9.0


def test_dead_letter_keeps_the_original_and_says_why() -> None:
    inbound = Inbound(
        body=b"{oops",
        routing_key="inbound.chat",
        exchange="t.support.inbound",
        content_type="application/json",
        headers={"trace": "abc"},
        message_id="m-1",
    )
    first = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    out = dead_letter(
        inbound,
        queue="t.intake.inbound",
        dead_letter_queue="t.intake.inbound.dead",
        dead_letter_exchange="intake.inbound.dlx",
        service="intake",
        error=PermanentError("body is not JSON", reason="invalid_json"),
        attempts=1,
        first_failure=first,
        now=first,
    )
    assert out.exchange == "intake.inbound.dlx"  # unprefixed: the publisher adds it
    assert out.routing_key == "t.intake.inbound.dead"
    assert out.mandatory is True
    assert out.body == b"{oops"
    assert out.headers["trace"] == "abc"
    assert out.headers["x-error-reason"] == "invalid_json"
    assert out.headers["x-error"] == "invalid_json: body is not JSON"
    assert out.headers["x-service"] == "intake"
    assert out.headers["x-attempts"] == 1
    assert out.headers["x-original-routing-key"] == "inbound.chat"
    assert out.headers["x-first-failure-at"] == "2026-11-27T10:00:00+00:00"


def test_dedup_window_is_bounded_by_size_and_age() -> None:
    now = [0.0]
    window = DedupWindow(size=3, max_age_s=10.0, clock=lambda: now[0])
    window.add_all(["a", "b", "c", "d"])
    assert "a" not in window
    assert all(x in window for x in "bcd")
    assert len(window) == 3
    now[0] = 11.0
    assert "b" not in window
    window.add_all(["e"])
    assert len(window) == 1


def test_names_take_the_prefix_as_it_is() -> None:
    names = Names("t1.")
    assert names.inbound_exchange == "t1.support.inbound"
    assert names.queue("intake") == "t1.intake.inbound"
    assert names.dead_letter_queue("sla_timer") == "t1.sla_timer.events.dead"
    assert names.dead_letter_exchange("notifier_urgent") == "t1.notifier.urgent.dlx"
    # An outbox row from before `.dlx` names its queue: the exchange, unprefixed.
    assert dead_letter_exchange_by_queue("t1.notifier.urgent.dead") == "notifier.urgent.dlx"
    assert dead_letter_exchange_by_queue("t1.notifier.urgent") == ""
    assert names.unrouted_queue == "t1.support.unrouted"
    assert names.event_log == "t1.support.events.log"


def test_quorum_queues_carry_delivery_limit_and_at_least_once_dead_lettering() -> None:
    settings = RuntimeSettings(AMQP_URL="amqp://x//", DELIVERY_LIMIT=7)
    by_name = {q.name: q for q in queues(Names("p."), settings)}
    args = by_name["p.intake.inbound"].queue_arguments
    assert args == {
        "x-queue-type": "quorum",
        "x-delivery-limit": 7,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "p.intake.inbound.dead",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    assert by_name["p.intake.inbound"].auto_delete is False
    # The runtime's own dead letters: a direct exchange per queue, bound to its `.dead`.
    (dead_binding,) = by_name["p.intake.inbound.dead"].bindings
    assert (dead_binding.exchange.name, dead_binding.exchange.type) == (
        "p.intake.inbound.dlx",
        "direct",
    )
    assert dead_binding.routing_key == "p.intake.inbound.dead"
    assert by_name["p.support.events.log"].queue_arguments["x-queue-type"] == "stream"
    memory = RuntimeSettings(AMQP_URL="memory://")
    assert "p.support.events.log" not in {q.name for q in queues(Names("p."), memory)}


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("from ana@acme.example", "from a***@acme.example"),
        ("caller +31205550134 rang", "caller +3******34 rang"),
        ("call +31 20 555 0134 now", "call +3******34 now"),
        (
            "ticket T-chat-0123456789abcdef at 2026-11-27",
            "ticket T-chat-0123456789abcdef at 2026-11-27",
        ),
        ("local 020 555 0134", "local 0******34"),
        ("at 2026-11-27T10:00:00+01:00, 3000 msgs", "at 2026-11-27T10:00:00+01:00, 3000 msgs"),
    ],
)
def test_personal_data_is_masked(text: str, masked: str) -> None:
    assert mask_text(text) == masked


def test_logs_are_json_and_masked_at_info(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "info")
    structlog.get_logger("t").info("ticket.opened", submitter="ana@acme.example", n=1)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["submitter"] == "a***@acme.example"
    assert line["event"] == "ticket.opened"
    assert line["level"] == "info"

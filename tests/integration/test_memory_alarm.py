"""A memory alarm on the broker: intake holds its deliveries without burning a core, and
publishes every event once the alarm clears.

During an alarm RabbitMQ blocks every publishing connection (`connection.blocked`);
intake then must not read on, and used to wait on its consumer socket too: a delivery
arriving during the block made that wait return at once, every turn, until the block
ended (BLOCKED_TIMEOUT_S, 30 s by default): a core spent doing nothing. The alarm is
raised on a private node, never on the shared broker.
"""

from __future__ import annotations

import resource
import time

from services.intake.main import IntakeSettings, bootstrap
from services.runtime.app import ServiceRunner, declare_topology
from services.runtime.metrics import RuntimeMetrics
from services.upstream import UpstreamPublisher
from tests.integration.conftest import ACCOUNTS, RunningService, short_chat, wait_for
from tests.support.broker import new_prefix
from tests.support.capture import Capture
from tests.support.rabbit_node import RabbitNode, rabbit_node  # noqa: F401 - the fixture

CHATS = 3000
HELD_S = 3.0


def _chat(i: int) -> bytes:
    # A business-critical chat ends a read ahead (it is handled first): what follows it
    # stays unread in the buffer, as deliveries arriving during a block do.
    return short_chat(f"alarm-{i}", business_critical=i % 50 == 49)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def test_a_memory_alarm_holds_intake_without_spinning_and_loses_nothing(
    rabbit_node: RabbitNode,  # noqa: F811
) -> None:
    prefix = new_prefix()
    settings = IntakeSettings(AMQP_URL=rabbit_node.url, AMQP_PREFIX=prefix, ACCOUNTS_FILE=ACCOUNTS)
    declare_topology(settings)
    events = Capture.bind(rabbit_node.url, f"{prefix}test.capture", f"{prefix}support.events")
    with UpstreamPublisher(rabbit_node.url, prefix) as upstream:
        for i in range(CHATS):
            upstream.publish("chat", _chat(i), message_id=f"alarm-{i}")

    rabbit_node.ctl("set_vm_memory_high_watermark", "0.000001")  # every publisher blocked
    service = RunningService(ServiceRunner(bootstrap(settings), settings, RuntimeMetrics.create()))
    try:
        service.start()
        publisher = service.runner.loop._publisher
        wait_for(lambda: publisher.blocked_since is not None, timeout=15)
        cpu0, wall0 = _cpu_s(), time.monotonic()
        time.sleep(HELD_S)
        busy = (_cpu_s() - cpu0) / (time.monotonic() - wall0)
        assert busy < 0.3, f"this process used {busy:.0%} of a core while intake was blocked"
        assert service.thread.is_alive()
    finally:
        rabbit_node.ctl("set_vm_memory_high_watermark", "0.4")

    try:
        seen: set[str] = set()

        def all_arrived() -> bool:
            seen.update(r.json()["correlationid"] for r in events.drain())
            return len(seen) == CHATS

        wait_for(all_arrived, timeout=60)
        assert seen == {f"alarm-{i}" for i in range(CHATS)}
    finally:
        service.stop()

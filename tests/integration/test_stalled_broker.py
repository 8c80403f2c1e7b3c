"""A broker that stops reading for a few seconds (credit flow in a burst, a memory or
disk alarm) must not cost the connection.

RabbitMQ throttles a publisher by not reading its socket; the kernel then sees a zero
receive window. py-amqp sets TCP_USER_TIMEOUT to 1 s by default, and Linux (5.11+)
aborts a connection whose peer keeps a zero window past that timeout: every pause of
the broker over a second became `[Errno 110] Connection timed out`, a reconnect, and a
window of redeliveries (duplicates downstream). The runtime's own bound for a blocked
broker is BLOCKED_TIMEOUT_S. The shared broker is never paused: a proxy started here
stops forwarding instead, so the client meets the same zero window.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import amqp
import pytest

from services.runtime.app import connection_factory
from services.runtime.config import RuntimeSettings
from tests.support.proxy import Proxy

PAUSE_S = 3.0


@pytest.fixture
def proxy(amqp_url: str) -> Iterator[Proxy]:
    p = Proxy.to(amqp_url)
    yield p
    p.close()


def test_a_broker_that_stops_reading_for_seconds_keeps_the_connection(
    amqp_url: str, prefix: str, proxy: Proxy
) -> None:
    settings = RuntimeSettings(AMQP_URL=proxy.url(amqp_url), AMQP_PREFIX=prefix)
    conn = connection_factory(settings, name="stall test")()
    conn.ensure_connection(max_retries=1)
    try:
        sock = conn.connection.transport.sock
        user_timeout = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
        assert user_timeout == int(settings.blocked_timeout_s * 1000)

        channel = conn.channel()
        queue = f"{prefix}stall.probe"
        channel.queue_declare(queue, auto_delete=True)
        message = amqp.Message(b"x" * 65536)
        errors: list[BaseException] = []

        def publish() -> None:
            try:  # ~16 MiB: far beyond what the socket buffers hold while stalled
                for _ in range(256):
                    channel.basic_publish(message, exchange="", routing_key=queue)
            except BaseException as exc:  # reported below
                errors.append(exc)

        with proxy.stall():
            writer = threading.Thread(target=publish, daemon=True)
            writer.start()
            time.sleep(PAUSE_S)
            assert writer.is_alive(), f"the writes ended while stalled: {errors}"
        writer.join(30)

        assert not writer.is_alive()
        assert errors == []
        # the connection still answers, and everything written reached the queue (the
        # queue counts what is routed to it a moment after the channel took it)
        deadline, count = time.monotonic() + 10, 0
        while count < 256 and time.monotonic() < deadline:
            count = channel.queue_declare(queue, passive=True).message_count
            time.sleep(0.05)
        assert count == 256
        channel.queue_delete(queue)
    finally:
        conn.release()

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

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import amqp
import pytest

from services.runtime.app import connection_factory
from services.runtime.config import RuntimeSettings

PAUSE_S = 3.0


class StallingProxy:
    """TCP to the broker; `stall()` stops reading what the client sends."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        # small buffers: a stalled reader shows the client a zero window within KiB
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.port = self.listener.getsockname()[1]
        self.reading = threading.Event()
        self.reading.set()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                broker = socket.create_connection(self.upstream)
                threading.Thread(
                    target=self._pipe, args=(client, broker, True), daemon=True
                ).start()
                threading.Thread(
                    target=self._pipe, args=(broker, client, False), daemon=True
                ).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, stallable: bool) -> None:
        with contextlib.suppress(OSError):
            while True:
                if stallable:
                    self.reading.wait()
                data = src.recv(4096)
                if not data:
                    break
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    @contextlib.contextmanager
    def stall(self) -> Iterator[None]:
        self.reading.clear()
        try:
            yield
        finally:
            self.reading.set()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def proxy(amqp_url: str) -> Iterator[StallingProxy]:
    parts = urlsplit(amqp_url)
    p = StallingProxy((parts.hostname or "127.0.0.1", parts.port or 5672))
    yield p
    p.close()


def _via(amqp_url: str, proxy: StallingProxy) -> str:
    parts = urlsplit(amqp_url)
    netloc = parts.netloc.rsplit("@", 1)
    auth = netloc[0] + "@" if len(netloc) == 2 else ""
    return parts._replace(netloc=f"{auth}127.0.0.1:{proxy.port}").geturl()


def test_a_broker_that_stops_reading_for_seconds_keeps_the_connection(
    amqp_url: str, prefix: str, proxy: StallingProxy
) -> None:
    settings = RuntimeSettings(AMQP_URL=_via(amqp_url, proxy), AMQP_PREFIX=prefix)
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

"""A paging endpoint that drops connection attempts fails fast, so the fallback goes out.

The endpoint is a real listening socket whose accept queue is full: further SYNs are
dropped, as by a firewall or a host that went away. The connect gives up after
CONNECT_TIMEOUT_S, not after the channel's whole timeout.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest

from services.notifier.channels_base import RetryPolicy
from services.notifier.channels_http import CONNECT_TIMEOUT_S, PagingWebhookChannel
from services.runtime.errors import TransientError

BODY = {"event_action": "trigger", "routing_key": "r" * 32, "dedup_key": "k-1"}


@pytest.fixture
def dropping_port() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = int(server.getsockname()[1])
    queued = []
    for _ in range(3):  # fill the accept queue; nobody accepts
        client = socket.socket()
        client.setblocking(False)
        with contextlib.suppress(BlockingIOError):  # in progress: it stays queued
            client.connect(("127.0.0.1", port))
        queued.append(client)
    time.sleep(0.1)
    yield port
    for client in queued:
        client.close()
    server.close()


def test_a_dropped_connect_fails_after_the_connect_timeout(dropping_port: int) -> None:
    channel = PagingWebhookChannel(
        f"http://127.0.0.1:{dropping_port}/v2/enqueue", timeout=30.0, retry=RetryPolicy(1)
    )
    started = time.monotonic()
    with channel, pytest.raises(TransientError) as failed:
        channel.send(BODY, key="k-1")
    took = time.monotonic() - started
    assert failed.value.reason == "timeout"
    assert CONNECT_TIMEOUT_S - 0.5 < took < CONNECT_TIMEOUT_S + 2.0

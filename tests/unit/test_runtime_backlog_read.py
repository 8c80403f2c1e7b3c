"""A backlog the broker is still pushing is read in while it flows, not cut at a gap.

A socket pair stands in for the broker; a thread sends frames the way a queue's
window arrives at consume start: a few at a time with short gaps.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from services.runtime.amqp_input import read_available, read_while_arriving
from services.runtime.amqp_transport import BufferedTCPTransport

HEARTBEAT = struct.pack(">BHI", 8, 0, 0) + b"\xce"


class Broker:
    """Frames read by the connection under test, as py-amqp's dispatch would see them."""

    def __init__(self, sock: socket.socket) -> None:
        reader = BufferedTCPTransport("127.0.0.1:1")  # never connects: the socket is given
        reader.sock, reader._quick_recv, reader.connected = sock, sock.recv, True
        self.frames: list[object] = []
        self.connection = SimpleNamespace(
            transport=reader, channels=None, on_inbound_frame=self.frames.append
        )


@pytest.fixture
def pair() -> Iterator[tuple[Broker, socket.socket]]:
    ours, theirs = socket.socketpair()
    yield Broker(ours), theirs
    ours.close()
    theirs.close()


def send_in_bursts(sock: socket.socket, bursts: list[tuple[float, int]]) -> threading.Thread:
    def run() -> None:
        for gap, count in bursts:
            time.sleep(gap)
            sock.sendall(HEARTBEAT * count)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_stream_with_short_gaps_is_read_to_the_expected_count(
    pair: tuple[Broker, socket.socket],
) -> None:
    broker, theirs = pair
    sender = send_in_bursts(theirs, [(0.0, 10)] + [(0.01, 10)] * 9)
    time.sleep(0.002)
    read_available(broker.connection)  # what a plain read takes: the first burst only
    first = len(broker.frames)
    read_while_arriving(
        broker.connection, done=lambda: len(broker.frames) >= 100, quiet_s=0.5, limit_s=5.0
    )
    sender.join()
    assert first < 100
    assert len(broker.frames) == 100


def test_a_pause_in_the_stream_ends_the_read_after_the_quiet_time(
    pair: tuple[Broker, socket.socket],
) -> None:
    broker, theirs = pair
    sender = send_in_bursts(theirs, [(0.0, 20), (1.5, 20)])
    started = time.monotonic()
    read_while_arriving(
        broker.connection, done=lambda: len(broker.frames) >= 40, quiet_s=0.05, limit_s=2.0
    )
    elapsed = time.monotonic() - started
    assert len(broker.frames) == 20
    assert 0.04 <= elapsed < 1.0
    sender.join()


def test_done_ends_the_read_at_once_and_the_limit_bounds_a_trickle(
    pair: tuple[Broker, socket.socket],
) -> None:
    broker, theirs = pair
    theirs.sendall(HEARTBEAT * 30)
    time.sleep(0.01)
    read_while_arriving(
        broker.connection, done=lambda: len(broker.frames) >= 5, quiet_s=0.05, limit_s=2.0
    )
    assert len(broker.frames) == 5  # the rest stays unread for the next turn
    sender = send_in_bursts(theirs, [(0.02, 1)] * 100)  # never quiet, never done
    started = time.monotonic()
    read_while_arriving(
        broker.connection, done=lambda: len(broker.frames) >= 1000, quiet_s=1.5, limit_s=0.3
    )
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 1.5  # the limit ended it, not a pause of quiet_s
    assert 30 < len(broker.frames) < 105
    sender.join()

"""Frames parsed out of the read buffer are the frames py-amqp would read."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from amqp.exceptions import UnexpectedFrame
from amqp.transport import TCPTransport

from services.runtime.amqp_input import has_input, wait_for_input
from services.runtime.amqp_transport import BufferedTCPTransport


def frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + b"\xce"


def transport(cls: type[TCPTransport], sock: socket.socket) -> TCPTransport:
    t = cls("127.0.0.1:1")  # never connects: the socket is given
    t.sock, t._quick_recv, t.connected = sock, sock.recv, True
    return t


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, broker = socket.socketpair()
    yield ours, broker
    ours.close()
    broker.close()


FRAMES = [
    (1, 1, b"\x00\x3c\x00\x3c" + b"m" * 40),
    (2, 1, b"h" * 30),
    (3, 1, b"b" * 70_000),  # more than one recv of the buffer
    (8, 0, b""),
    (3, 7, b"x"),
]


def test_frames_match_py_amqp_however_the_bytes_arrive(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, broker = pair
    data = b"".join(frame(*f) for f in FRAMES)
    plain = transport(TCPTransport, ours)
    buffered = transport(BufferedTCPTransport, ours)
    for reader in (plain, buffered):
        broker.sendall(data)
        assert [reader.read_frame() for _ in FRAMES] == FRAMES
    assert buffered.pending() == 0


def test_a_partial_frame_survives_a_timeout(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, broker = pair
    reader = transport(BufferedTCPTransport, ours)
    whole = frame(1, 2, b"p" * 100) + frame(2, 2, b"q")
    broker.sendall(whole[:50])
    ours.settimeout(0.05)
    with pytest.raises(TimeoutError):
        reader.read_frame()
    assert reader.connected  # a timeout is not a dead connection
    assert reader.pending() == 50
    broker.sendall(whole[50:])
    assert reader.read_frame() == (1, 2, b"p" * 100)
    assert reader.read_frame() == (2, 2, b"q")


def test_a_bad_frame_end_and_a_closed_socket_raise(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, broker = pair
    reader = transport(BufferedTCPTransport, ours)
    broker.sendall(frame(1, 0, b"ok")[:-1] + b"\x00")
    with pytest.raises(UnexpectedFrame):
        reader.read_frame()
    broker.close()
    reader = transport(BufferedTCPTransport, ours)
    with pytest.raises(OSError, match="unexpectedly closed"):
        reader.read_frame()


def test_has_input_reads_what_the_socket_has_without_waiting(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, broker = pair
    reader = transport(BufferedTCPTransport, ours)
    connection = SimpleNamespace(transport=reader)
    assert not has_input(connection)  # nothing there: no wait, nothing buffered
    data = b"".join(frame(*f) for f in FRAMES[:2])
    broker.sendall(data)
    time.sleep(0.05)
    assert has_input(connection) and reader.pending() == len(data)
    assert [reader.read_frame() for _ in FRAMES[:2]] == FRAMES[:2]
    ours.settimeout(1.0)  # as inside py-amqp's having_timeout: select, the bytes stay
    broker.sendall(data)
    time.sleep(0.05)
    assert has_input(connection) and reader.pending() == 0
    ours.settimeout(None)
    assert [reader.read_frame() for _ in FRAMES[:2]] == FRAMES[:2]
    broker.close()
    assert has_input(connection)  # a closed socket is input: reading it raises
    with pytest.raises(OSError, match="unexpectedly closed"):
        reader.read_frame()


@pytest.mark.parametrize("cls", [BufferedTCPTransport, TCPTransport])
def test_a_socket_closed_under_the_loop_is_a_lost_connection(
    cls: type[TCPTransport], pair: tuple[socket.socket, socket.socket]
) -> None:
    # ConnectionError is what the consume loop reconnects on at once; select() on a
    # closed socket raises ValueError/TypeError, which a runner treats as a crash.
    ours, _ = pair
    gone = transport(cls, ours)
    connection = SimpleNamespace(transport=gone)
    ours.close()  # fd -1
    with pytest.raises(OSError):  # ConnectionError, or EBADF from the buffered recv
        has_input(connection)
    with pytest.raises(ConnectionError):
        wait_for_input([connection], 0.01)
    gone.sock = None  # as py-amqp's close() leaves it
    with pytest.raises(ConnectionError):
        has_input(connection)
    with pytest.raises(ConnectionError):
        wait_for_input([connection], 0.01)


def test_tcp_user_timeout_follows_blocked_timeout_within_what_the_kernel_takes() -> None:
    import socket

    from services.runtime.app import _socket_settings
    from services.runtime.config import RuntimeSettings

    def user_timeout(blocked_s: float) -> int:
        settings = RuntimeSettings(AMQP_URL="amqp://x//", BLOCKED_TIMEOUT_S=blocked_s)
        return _socket_settings(settings)[socket.TCP_USER_TIMEOUT]

    assert user_timeout(30) == 30_000
    assert user_timeout(0.0001) == 1000  # never 0, which would mean no bound at all
    assert user_timeout(1e9) == 2**31 - 1  # the option is a C unsigned int

"""A TCP proxy in front of the shared broker, for faults a test must not cause on it.

`stall()` stops reading what the client sends (the client meets a zero window, as when
RabbitMQ throttles a publisher); `pace_s` slows what the broker sends to whole AMQP
frames, `FRAMES_PER_PACE` of them per pause (deliveries that trickle in with gaps
between them, as from a loaded broker; a pause inside a frame would not be a gap, the
client reads a frame it has begun to its end).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

CHUNK = 4096
FRAMES_PER_PACE = 30  # ten deliveries of three frames (method, header, body)


class Proxy:
    def __init__(self, upstream: tuple[str, int], pace_s: float = 0.0) -> None:
        self.upstream = upstream
        self.pace_s = pace_s
        self.listener = socket.create_server(("127.0.0.1", 0))
        # small buffers: a stalled reader shows the client a zero window within KiB
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CHUNK)
        self.port = self.listener.getsockname()[1]
        self.reading = threading.Event()
        self.reading.set()
        threading.Thread(target=self._accept, daemon=True).start()

    @classmethod
    def to(cls, amqp_url: str, pace_s: float = 0.0) -> Proxy:
        parts = urlsplit(amqp_url)
        return cls((parts.hostname or "127.0.0.1", parts.port or 5672), pace_s)

    def url(self, amqp_url: str) -> str:
        """`amqp_url` (its credentials and vhost) through this proxy."""
        parts = urlsplit(amqp_url)
        netloc = parts.netloc.rsplit("@", 1)
        auth = netloc[0] + "@" if len(netloc) == 2 else ""
        return parts._replace(netloc=f"{auth}127.0.0.1:{self.port}").geturl()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                broker = socket.create_connection(self.upstream)
                for args in ((client, broker, True, 0.0), (broker, client, False, self.pace_s)):
                    threading.Thread(target=self._pipe, args=args, daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, stallable: bool, pace: float) -> None:
        pending = bytearray()  # the paced direction's bytes short of a whole frame
        with contextlib.suppress(OSError):
            while True:
                if stallable:
                    self.reading.wait()
                data = src.recv(CHUNK)
                if not data:
                    break
                if pace:
                    pending += data
                    _send_paced(pending, dst, pace)
                else:
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


def _send_paced(pending: bytearray, dst: socket.socket, pace: float) -> None:
    """Send the whole AMQP frames at the front of `pending` (type, channel, size,
    payload, frame end; broker -> client has no protocol header), a few per pause."""
    frames = []
    while len(pending) >= 7:
        end = 8 + struct.unpack_from(">I", pending, 3)[0]
        if len(pending) < end:
            break
        frames.append(bytes(pending[:end]))
        del pending[:end]
    for i in range(0, len(frames), FRAMES_PER_PACE):
        dst.sendall(b"".join(frames[i : i + FRAMES_PER_PACE]))
        time.sleep(pace)

"""The recorded events `sla whatif` replays: read from the `support.events.log` stream
or from JSON lines exported from it. Reading never publishes and never removes anything:
a stream keeps its messages whoever reads them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from amqp.exceptions import NotFound
from pydantic import ValidationError

from schemas.events import EVENT_TYPES, CloudEvent
from services.operator.config import OperatorError
from services.operator.dlq_broker import connect
from services.runtime.config import RuntimeSettings
from services.runtime.names import Names

PREFETCH = 500  # a stream consumer must set one; also how far acks may lag
IDLE_S = 1.5  # nothing delivered for this long: caught up with the stream's end
FIRST_S = 5.0  # the first delivery may take longer: the broker reads from the segment files


@dataclass
class Recorded:
    """The events read, and the lines that were not canonical events (counted)."""

    events: list[CloudEvent] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)  # as read, for --export
    unreadable: int = 0

    def add(self, body: bytes, since: datetime | None) -> None:
        try:
            event = CloudEvent.model_validate_json(body)
            if event.type not in EVENT_TYPES:
                raise ValueError(event.type)
        except (ValidationError, ValueError):
            self.unreadable += 1
            return
        if since is not None and event.time < since:
            return  # a timestamp offset starts at a chunk: earlier messages come first
        self.events.append(event)
        self.raw.append(body)


def read_file(path: Path, since: datetime | None = None) -> Recorded:
    """JSON lines, one CloudEvent envelope per line (blank lines skipped)."""
    out = Recorded()
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise OperatorError(f"cannot read {path}: {exc.strerror or exc}") from None
    for line in lines:
        if line.strip():
            out.add(line.strip(), since)
    return out


def export(recorded: Recorded, path: Path) -> None:
    """What was read, as JSON lines `--from-file` reads back."""
    path.write_bytes(b"".join(body + b"\n" for body in recorded.raw))


def read_stream(
    settings: RuntimeSettings, since: datetime | None, horizon: datetime, idle_s: float = IDLE_S
) -> Recorded:
    """Consume the stream from `since` (None: its first message) until caught up: no
    delivery for `idle_s`, or a message published after `horizon` (the moment we started:
    a busy stream would otherwise never go idle). Acks only grant stream credit."""
    queue = Names(settings.amqp_prefix).event_log
    conn = connect(settings)
    try:
        channel = conn.channel()
        try:
            channel.queue_declare(queue=queue, passive=True)
        except NotFound:
            raise OperatorError(
                f"no stream {queue} on the broker: run `premium-support topology declare` "
                "(the in-memory transport keeps no stream; use --from-file)"
            ) from None
        return _consume(conn, channel, queue, since, horizon, idle_s)
    finally:
        conn.release()


def _consume(
    conn: Any, channel: Any, queue: str, since: datetime | None, horizon: datetime, idle_s: float
) -> Recorded:
    out = Recorded()
    done = False

    def on_message(message: Any) -> None:
        nonlocal done
        if _published_after(message, horizon):
            done = True
        if not done:
            out.add(bytes(message.body), since)
        channel.basic_ack(message.delivery_tag)

    channel.basic_qos(0, PREFETCH, False)
    # NOTE: an AMQP timestamp has whole seconds; py-amqp writes an aware datetime as one.
    offset: object = since.replace(microsecond=0) if since is not None else "first"
    channel.basic_consume(queue=queue, callback=on_message, arguments={"x-stream-offset": offset})
    last, wait = time.monotonic(), max(idle_s, FIRST_S)
    while not done:
        try:
            conn.drain_events(timeout=min(idle_s, 0.25))
            last, wait = time.monotonic(), idle_s
        except TimeoutError:
            if time.monotonic() - last >= wait:
                break
    return out


def _published_after(message: Any, horizon: datetime) -> bool:
    """Whether the event in `message` was made after `horizon` (its envelope time)."""
    try:
        when = json.loads(message.body).get("time")
        return bool(when) and datetime.fromisoformat(when) > horizon
    except (ValueError, TypeError, AttributeError):
        return False


def bounds(events: Iterable[CloudEvent]) -> tuple[datetime | None, datetime | None]:
    times = [e.time for e in events]
    return (min(times), max(times)) if times else (None, None)

"""The three services in this process on kombu's in-memory transport, plus the demo's
window onto them: a queue bound to support.events with `#`, and the dead-letter queues.

Nothing listens on a port and nothing leaves the process: `memory://` is a broker inside
the process, the stores are SQLite files in a temporary folder, the on-call file uses
console channels. Each run gets its own `AMQP_PREFIX`, because kombu's in-memory broker
is shared by the whole process and keeps queues between runs (tests run it twice).
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from kombu import Connection, Exchange, Queue

from services.intake.main import IntakeSettings
from services.intake.main import bootstrap as intake
from services.notifier.main import NotifierSettings
from services.notifier.main import bootstrap as notifier
from services.runtime.app import ServiceRunner, declare_topology
from services.runtime.metrics import RuntimeMetrics
from services.runtime.names import SERVICE_BINDINGS, Names
from services.sla_timer.main import SlaSettings
from services.sla_timer.main import bootstrap as sla_timer


class SetupError(Exception):
    """A file the scenario names cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Seen:
    """One message the demo saw: an event (`kind` is its routing key) or a dead letter
    (`kind` is `dead_letter.<service>`, `data` its failure headers)."""

    at: float  # seconds since the pipeline started
    kind: str
    subject: str | None
    correlation: str | None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Files:
    accounts: Path
    oncall: Path
    policy: Path | None


class Pipeline:
    def __init__(self, files: Files) -> None:
        self.files = files
        self.names = Names(f"demo-{uuid.uuid4().hex[:8]}.")
        self.started = time.monotonic()
        self._tmp = tempfile.TemporaryDirectory(prefix="premium-support-demo-")
        self._runners: list[ServiceRunner] = []
        self._threads: list[threading.Thread] = []
        self._conn = Connection("memory://")
        self._watch = f"{self.names.prefix}demo.watch"

    def _settings(self) -> tuple[IntakeSettings, SlaSettings, NotifierSettings]:
        # METRICS_PORT=0 (off) whatever the environment says: the demo opens no port.
        common: dict[str, Any] = {
            "AMQP_URL": "memory://",
            "AMQP_PREFIX": self.names.prefix,
            "METRICS_PORT": 0,
        }
        folder = Path(self._tmp.name)
        return (
            IntakeSettings(**common, ACCOUNTS_FILE=self.files.accounts),
            SlaSettings(
                **common,
                SLA_STORE_URL=str(folder / "sla_timer.db"),
                POLICY_FILE=self.files.policy,
                SLA_TICK_S=0.1,
            ),
            NotifierSettings(
                **common,
                ONCALL_FILE=self.files.oncall,
                NOTIFIER_STORE_URL=str(folder / "notifier.db"),
                POLICY_FILE=self.files.policy,
            ),
        )

    def __enter__(self) -> Pipeline:
        intake_s, sla_s, notifier_s = self._settings()
        try:
            specs = [
                (intake(intake_s), intake_s),
                (sla_timer(sla_s), sla_s),
                (notifier(notifier_s), notifier_s),
            ]
        except ValueError as exc:  # a malformed accounts, policy or on-call file
            self._tmp.cleanup()
            raise SetupError(str(exc)) from exc
        declare_topology(intake_s)
        events = Exchange(self.names.events_exchange, "topic", durable=True, auto_delete=False)
        Queue(self._watch, events, routing_key="#")(self._conn.default_channel).declare()
        metrics = RuntimeMetrics.create()
        for spec, settings in specs:
            runner = ServiceRunner(spec, settings, metrics)
            thread = threading.Thread(target=runner.run, name=f"demo-{spec.name}", daemon=True)
            self._runners.append(runner)
            self._threads.append(thread)
            thread.start()
        self.started = time.monotonic()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for runner in self._runners:
            runner.stop.set()
        for thread in self._threads:
            thread.join(timeout=15)
        self._conn.release()
        self._tmp.cleanup()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def publish(self, channel: str, body: bytes, content_type: str, message_id: str) -> None:
        self._conn.Producer().publish(
            body,
            exchange=self.names.inbound_exchange,
            routing_key=f"inbound.{channel}",
            content_type=content_type,
            content_encoding="binary",
            message_id=message_id,
        )

    def poll(self) -> list[Seen]:
        """Everything that arrived since the last poll (events, then dead letters)."""
        channel = self._conn.default_channel
        seen: list[Seen] = []
        while (message := channel.basic_get(self._watch, no_ack=True)) is not None:
            event = json.loads(message.body)
            seen.append(
                Seen(
                    self.elapsed(),
                    message.delivery_info["routing_key"],
                    event.get("subject"),
                    event.get("correlationid"),
                    event.get("data") or {},
                )
            )
        for service in SERVICE_BINDINGS:
            queue = self.names.dead_letter_queue(service)
            while (letter := channel.basic_get(queue, no_ack=True)) is not None:
                headers = dict(letter.headers or {})
                message_id = letter.properties.get("message_id")
                seen.append(
                    Seen(self.elapsed(), f"dead_letter.{service}", None, message_id, headers)
                )
        return seen

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.intake.main import IntakeSettings, bootstrap
from services.runtime.app import ServiceRunner, ServiceSpec, declare_topology
from services.runtime.config import RuntimeSettings
from services.runtime.logging import configure_logging
from services.runtime.metrics import RuntimeMetrics
from services.upstream import UpstreamPublisher
from tests.conftest import ROOT
from tests.support.broker import delete_topology, new_prefix
from tests.support.capture import Capture

ACCOUNTS = ROOT / "examples" / "accounts.yaml"


def short_chat(conversation_id: str, business_critical: bool = False) -> bytes:
    """A one-line chat from a known Premium Support portal, as an upstream sends it."""
    return json.dumps(
        {
            "business_critical": business_critical,
            "conversation_id": conversation_id,
            "portal_id": 4411,
            "started_at": "2026-12-03T08:00:00Z",
            "visitor": {"user_id": "u-20", "email": "bo@acme.example", "name": "Bo"},
            "messages": [{"from": "visitor", "at": "2026-12-03T08:00:00Z", "text": "Hello"}],
        }
    ).encode()


PG_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def prefix(amqp_url: str) -> Iterator[str]:
    """Every test gets its own AMQP_PREFIX: its own exchanges and queues."""
    value = new_prefix()
    yield value
    delete_topology(amqp_url, value, [f"{value}test.capture"])


@pytest.fixture
def settings(amqp_url: str, prefix: str) -> IntakeSettings:
    configure_logging("console", "warning")
    return IntakeSettings(
        AMQP_URL=amqp_url,
        AMQP_PREFIX=prefix,
        ACCOUNTS_FILE=ACCOUNTS,
        RETRY_INITIAL_S=0.05,
        RETRY_MAX_S=0.2,
    )


@pytest.fixture
def events(amqp_url: str, prefix: str, settings: IntakeSettings) -> Capture:
    """Everything published on support.events, captured from the outside."""
    declare_topology(settings)
    return Capture.bind(amqp_url, f"{prefix}test.capture", f"{prefix}support.events")


@pytest.fixture
def upstream(amqp_url: str, prefix: str) -> Iterator[UpstreamPublisher]:
    with UpstreamPublisher(amqp_url, prefix) as publisher:
        yield publisher


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within timeout")
        time.sleep(0.02)


class RunningService:
    def __init__(self, runner: ServiceRunner) -> None:
        self.runner = runner
        self.thread = threading.Thread(target=runner.run, daemon=True)

    def start(self) -> RunningService:
        self.thread.start()
        wait_for(lambda: self.runner.loop.connected)
        return self

    def stop(self) -> None:
        self.runner.stop.set()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), "service did not stop"

    def settled(self, outcome: str) -> float:
        value = self.runner.loop._metrics.registry.get_sample_value(
            "messages_settled_total", {"service": self.runner.spec.name, "outcome": outcome}
        )
        return value or 0.0


def start_all(specs: Iterable[tuple[ServiceSpec, RuntimeSettings]]) -> list[RunningService]:
    """Each (spec, settings) running in this process, in order, each connected."""
    return [
        RunningService(ServiceRunner(spec, s, RuntimeMetrics.create())).start() for spec, s in specs
    ]


@pytest.fixture
def intake(settings: IntakeSettings, events: Capture) -> Iterator[RunningService]:
    service = RunningService(ServiceRunner(bootstrap(settings), settings, RuntimeMetrics.create()))
    service.start()
    yield service
    service.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An SLA store per test: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield str(tmp_path / "clocks.db")
        return
    with pg_schema() as url:
        yield url


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    """A store URL on PostgreSQL in a schema of its own, dropped afterwards."""
    schema = f"t{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()

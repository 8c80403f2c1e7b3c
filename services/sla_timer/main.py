"""sla_timer's one wiring place: settings -> policy, store -> handlers and scheduler."""

from __future__ import annotations

import fcntl
import time
from pathlib import Path
from typing import IO

import structlog
from pydantic import Field

from services.common.store_engine import LeaderLock
from services.runtime.app import ServiceSpec
from services.runtime.outbox import OutboxRelay
from services.runtime.retention import DAY_S, Pruner, RetentionSettings
from services.sla_timer.metrics import OpenClocks, SlaMetrics
from services.sla_timer.policy import load_policy
from services.sla_timer.scheduler import Scheduler
from services.sla_timer.service import SlaTimer
from services.sla_timer.store import ClockStore, engine_for
from services.sla_timer.store_reads import open_clock_counts, ping

log = structlog.get_logger("sla_timer")
RELAY_LOCK = 815004  # PostgreSQL advisory lock: one replica relays the shared outbox


class SlaSettings(RetentionSettings):
    sla_store_url: str | None = Field(None, alias="SLA_STORE_URL")
    policy_file: Path | None = Field(None, alias="POLICY_FILE")
    sla_tick_s: float = Field(0.2, alias="SLA_TICK_S", gt=0)
    # Longer than any redelivery or dead-letter replay (docs/retention.md).
    processed_retention_s: float = Field(7 * DAY_S, alias="PROCESSED_RETENTION_S", gt=0)
    early_update_retention_s: float = Field(7 * DAY_S, alias="EARLY_UPDATE_RETENTION_S", gt=0)


def single_replica_lock(path: str) -> IO[str]:
    """SQLite serves one sla_timer: a second one says so and waits for the first."""
    handle = open(f"{path}.lock", "w")  # noqa: SIM115 - held for the process lifetime
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            log.warning("sla_timer.waiting_for_lock", store=path, reason="another replica")
            time.sleep(2)


def bootstrap(settings: SlaSettings) -> ServiceSpec:
    policy = load_policy(settings.policy_file)
    engine = engine_for(settings.sla_store_url)
    lock = None
    if engine.dialect.name == "sqlite":
        lock = single_replica_lock(settings.sla_store_url or "sla_timer.db")
    store = ClockStore(engine, lock)
    store.migrate()
    metrics = SlaMetrics()
    metrics.registry.register(OpenClocks(lambda: open_clock_counts(engine)))
    relay = OutboxRelay(settings, "sla_timer.relay", store, leader=LeaderLock(engine, RELAY_LOCK))
    timer = SlaTimer(store, policy, metrics=metrics, on_commit=relay.wake)
    scheduler = Scheduler(timer, settings.sla_tick_s, on_fired=relay.wake)
    pruner = Pruner(
        "sla_timer.pruner",
        engine,
        lambda now: store.prune_jobs(
            now,
            settings.processed_retention_s,
            settings.outbox_retention_s,
            settings.early_update_retention_s,
        ),
        settings.prune_every_s,
        settings.prune_batch,
    )
    return ServiceSpec(
        name="sla_timer",
        handlers={"ticket": timer.handle},
        batch_handler=timer.handle_batch,
        dedup_inputs=True,
        workers=(scheduler.run, relay.run, pruner.run),
        metrics=metrics.registry,
        health={
            "store": lambda: ping(engine),
            "scheduler": scheduler.check_alive,
            "relay": relay.check_alive,
        },
    )

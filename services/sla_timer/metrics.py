"""sla_timer's own metrics: what fired, and how late."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

LATE_AFTER_MS = 1000


class SlaMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.fired = Counter(
            "sla_events_fired_total",
            "Warnings and breaches fired",
            ["kind"],
            registry=self.registry,
        )
        self.late = Counter(
            "sla_events_fired_late_total",
            f"Warnings and breaches fired more than {LATE_AFTER_MS} ms after their instant",
            registry=self.registry,
        )
        self.lateness = Histogram(
            "sla_fire_lateness_seconds",
            "fired_at - due instant",
            registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 30, 300),
        )

    def observe(self, kind: str, lateness_ms: int) -> None:
        self.fired.labels(kind).inc()
        self.lateness.observe(lateness_ms / 1000)
        if lateness_ms > LATE_AFTER_MS:
            self.late.inc()

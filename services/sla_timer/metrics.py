"""sla_timer's own metrics: what fired, and how late."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

LATE_AFTER_MS = 1000
OPEN_CACHE_S = 10.0

log = structlog.get_logger("sla_timer.metrics")


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


class OpenClocks:
    """`sla_clocks_open{state}`, counted in the store when scraped, so it is right across
    restarts and replicas (each replica sharing a store reports the same total: take
    `max`, not `sum`). Cached `ttl_s`: scrapes, however frequent, query at most that often.
    """

    def __init__(
        self,
        count: Callable[[], Mapping[str, int]],
        ttl_s: float = OPEN_CACHE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._count = count
        self._ttl_s = ttl_s
        self._monotonic = monotonic
        self._lock = threading.Lock()  # concurrent scrapes share one query
        self._cached: Mapping[str, int] | None = None
        self._at = 0.0

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        counts = self._counts()
        if counts is None:
            return  # store down: /healthz names it; the other metrics are still served
        family = self._family()
        for state, value in sorted(counts.items()):
            family.add_metric([state], value)
        yield family

    def _counts(self) -> Mapping[str, int] | None:
        with self._lock:
            if self._cached is None or self._monotonic() - self._at >= self._ttl_s:
                try:
                    self._cached = self._count()
                except Exception as exc:  # a scrape must not fail because the store did
                    log.warning("sla_clocks_open.unavailable", error=str(exc))
                    return None
                self._at = self._monotonic()
            return self._cached

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("sla_clocks_open", "SLA clocks not yet stopped", labels=["state"])

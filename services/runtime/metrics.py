"""Prometheus metrics of the shared runtime. Built on demand, never at import time."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass
class RuntimeMetrics:
    registry: CollectorRegistry
    consumed: Counter
    outcomes: Counter
    published: Counter
    handler_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> RuntimeMetrics:
        registry = registry or CollectorRegistry()
        return cls(
            registry=registry,
            consumed=Counter(
                "messages_consumed_total", "Deliveries received", ["service"], registry=registry
            ),
            outcomes=Counter(
                "messages_settled_total",
                "Deliveries settled, by outcome (acked, duplicate, dead_lettered, retried)",
                ["service", "outcome"],
                registry=registry,
            ),
            published=Counter(
                "messages_published_total", "Confirmed publishes", ["service"], registry=registry
            ),
            handler_seconds=Histogram(
                "handler_duration_seconds",
                "Handler time per delivery",
                ["service"],
                registry=registry,
                buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5),
            ),
        )

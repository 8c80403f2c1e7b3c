"""Prometheus metrics of the shared runtime. Built on demand, never at import time."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.values import MutexValue


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


class ServiceMetrics:
    """One service's children of the runtime metrics, looked up once, not per message."""

    def __init__(self, metrics: RuntimeMetrics, service: str) -> None:
        self.registry = metrics.registry
        self.consumed = metrics.consumed.labels(service)
        self.published = metrics.published.labels(service)
        self.handler_seconds = metrics.handler_seconds.labels(service)
        self._outcomes = metrics.outcomes
        self._service = service
        self._by_outcome: dict[str, Any] = {}

    def outcome(self, outcome: str) -> Any:
        child = self._by_outcome.get(outcome)
        if child is None:
            child = self._by_outcome[outcome] = self._outcomes.labels(self._service, outcome)
        return child


def observe_many(histogram: Any, amount: float, count: int) -> None:
    """`histogram.observe(amount)` `count` times over, at the cost of one: the same
    bucket counts and the same sum, added as often (float sums depend on the order of
    the additions), under one lock each instead of two per observation."""
    child: Any = histogram
    total: Any = getattr(child, "_sum", None)
    if type(total) is not MutexValue or type(child) is not Histogram or amount != amount:
        for _ in range(count):  # multiprocess values, another make, or nan: as it is
            child.observe(amount)
        return
    child._raise_if_not_observable()  # type: ignore[no-untyped-call]
    with total._lock:
        for _ in range(count):
            total._value += amount
    # observe's bucket: the first whose bound is >= amount (the last bound is +Inf)
    child._buckets[bisect_left(child._upper_bounds, amount)].inc(count)

"""The notifier's own metrics: notifications that went out, those that did not, and
whether level 1 of the on-call plan is covered."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric


class NotifierMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.sent = Counter(
            "notifications_sent_total",
            "Notifications delivered, by channel",
            ["channel"],
            registry=self.registry,
        )
        self.failed = Counter(
            "notifications_failed_total",
            "Notifications given up after their retry budget (or refused for good), by channel",
            ["channel"],
            registry=self.registry,
        )
        self.retried = Counter(
            "notification_attempts_failed_total",
            "Send attempts that failed and were retried (or fell back), by channel",
            ["channel"],
            registry=self.registry,
        )
        self.cancelled = Counter(
            "notifications_cancelled_total",
            "Queued notifications no longer needed (ticket closed or acknowledged meanwhile)",
            registry=self.registry,
        )
        self.coverage = CoverageMetrics(self.registry)


class CoverageMetrics:
    """The last coverage check's result (a collector: nothing is exported before the
    first check, rather than zeros that would read as a gap since 1970). The next gap
    is exported as timestamps, not as "seconds until", so the value stays true between
    the hourly checks: an alert compares it with `time()`. No gap ahead is +Inf."""

    FAMILIES = (
        ("oncall_coverage_gaps", "Spans with nobody on call at level 1 in the next 7 days"),
        (
            "oncall_coverage_next_gap_start_timestamp_seconds",
            "Start (Unix time) of the next span with nobody on call at level 1; +Inf if none",
        ),
        (
            "oncall_coverage_next_gap_end_timestamp_seconds",
            "End (Unix time) of the next span with nobody on call at level 1; +Inf if none",
        ),
        (
            "oncall_coverage_last_check_timestamp_seconds",
            "When the notifier last checked on-call coverage (Unix time)",
        ),
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        self._values: tuple[float, ...] | None = None  # replaced whole: no lock needed
        registry.register(self)

    def observe(self, gaps: Sequence[tuple[datetime, datetime]], now: datetime) -> None:
        """Record a check made at `now` that found `gaps` (ordered, as coverage_gaps)."""
        start, end = (gaps[0][0].timestamp(), gaps[0][1].timestamp()) if gaps else (math.inf,) * 2
        self._values = (float(len(gaps)), start, end, now.timestamp())

    def describe(self) -> Iterator[Metric]:
        for name, doc in self.FAMILIES:
            yield GaugeMetricFamily(name, doc)

    def collect(self) -> Iterator[Metric]:
        values = self._values
        if values is None:
            return
        for (name, doc), value in zip(self.FAMILIES, values, strict=True):
            yield GaugeMetricFamily(name, doc, value=value)

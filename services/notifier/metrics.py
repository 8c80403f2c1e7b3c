"""The notifier's own metrics: notifications that went out, and those that did not."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


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

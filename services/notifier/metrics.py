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
            "Notifications not delivered after their channel's retries, by channel",
            ["channel"],
            registry=self.registry,
        )

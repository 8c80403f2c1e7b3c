"""notifier's one wiring place: settings -> on-call file, ledger, channels -> handlers."""

from __future__ import annotations

from pathlib import Path

import structlog
from pydantic import Field

from services.common.store_engine import engine_for, ping
from services.notifier.channels import RetryPolicy
from services.notifier.delivery import Deliverer, SmtpSettings
from services.notifier.digest import DigestQueue
from services.notifier.ledger import Ledger
from services.notifier.metrics import NotifierMetrics
from services.notifier.oncall import load_oncall
from services.notifier.service import Notifier
from services.notifier.worker import NotifierWorker
from services.runtime.app import ServiceSpec
from services.runtime.config import RuntimeSettings
from services.runtime.names import Names

log = structlog.get_logger("notifier")


class NotifierSettings(RuntimeSettings):
    oncall_file: Path = Field(alias="ONCALL_FILE")
    notifier_store_url: str = Field("notifier.db", alias="NOTIFIER_STORE_URL")
    smtp_host: str | None = Field(None, alias="SMTP_HOST")
    smtp_port: int = Field(25, alias="SMTP_PORT")
    smtp_starttls: bool = Field(False, alias="SMTP_STARTTLS")
    smtp_username: str | None = Field(None, alias="SMTP_USERNAME")
    smtp_password: str | None = Field(None, alias="SMTP_PASSWORD")
    smtp_sender: str = Field("premium-support@localhost", alias="SMTP_SENDER")
    send_attempts: int = Field(3, alias="SEND_ATTEMPTS", ge=1)
    send_retry_initial_s: float = Field(0.5, alias="SEND_RETRY_INITIAL_S", gt=0)


def bootstrap(settings: NotifierSettings) -> ServiceSpec:
    oncall = load_oncall(settings.oncall_file)  # a malformed file stops us here, with its line
    ledger = Ledger(engine_for(settings.notifier_store_url))
    ledger.migrate()
    smtp = None
    if settings.smtp_host:
        smtp = SmtpSettings(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_sender,
            settings.smtp_starttls,
            settings.smtp_username,
            settings.smtp_password,
        )
    retry = RetryPolicy(
        attempts=settings.send_attempts,
        initial_s=settings.send_retry_initial_s,
        max_s=max(2.0, settings.send_retry_initial_s * 4),
    )
    deliverer = Deliverer(oncall, smtp, retry)
    digests = DigestQueue(ledger.engine)
    metrics = NotifierMetrics()
    notifier = Notifier(
        ledger,
        deliverer,
        Names(settings.amqp_prefix),
        digests=digests,
        metrics=metrics,
    )
    # The worker checks coverage at once (gaps logged as errors, posted to the team
    # channel), then hourly; it sends team digests and publishes their events.
    worker = NotifierWorker(digests, deliverer, settings, metrics=metrics)
    # NOTE: no input dedup window here: the ledger is the notifier's idempotency, and the
    # window would drop an input replayed from the dead-letter queue.
    handlers = {"ticket": notifier.handle, "sla": notifier.handle, "escalation": notifier.handle}
    return ServiceSpec(
        name="notifier",
        handlers=handlers,
        queues=("notifier_urgent", "notifier"),
        workers=(worker.run,),
        metrics=metrics.registry,
        health={"store": lambda: ping(ledger.engine), "worker": worker.check_alive},
    )

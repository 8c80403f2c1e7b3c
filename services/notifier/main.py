"""notifier's one wiring place: settings -> on-call file, ledger, channels -> handlers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from pydantic import Field

from services.common.ack_token import SHORTEST_SECRET, AckLinks
from services.common.store_engine import LeaderLock, engine_for, ping
from services.notifier import digest
from services.notifier import ledger as ledger_module
from services.notifier import sends as sends_module
from services.notifier.delivery import Deliverer, SmtpSettings
from services.notifier.digest import DigestQueue
from services.notifier.ledger import Ledger
from services.notifier.metrics import NotifierMetrics
from services.notifier.oncall import load_oncall
from services.notifier.outcomes import Outcomes
from services.notifier.retry_plan import SendRetry
from services.notifier.sender import Sender
from services.notifier.sends import SendQueue
from services.notifier.service import Notifier
from services.notifier.worker import NotifierWorker
from services.runtime.app import ServiceSpec
from services.runtime.names import Names
from services.runtime.outbox import OutboxRelay
from services.runtime.retention import DAY_S, PruneJob, Pruner, RetentionSettings
from services.runtime.secrets import read_secret
from services.runtime.yaml_files import ConfigFileError

log = structlog.get_logger("notifier")
RELAY_LOCK = 815005  # PostgreSQL advisory lock: one replica relays the shared outbox


class NotifierSettings(RetentionSettings):
    oncall_file: Path = Field(alias="ONCALL_FILE")
    notifier_store_url: str = Field("notifier.db", alias="NOTIFIER_STORE_URL")
    smtp_host: str | None = Field(None, alias="SMTP_HOST")
    smtp_port: int = Field(25, alias="SMTP_PORT")
    smtp_starttls: bool = Field(False, alias="SMTP_STARTTLS")
    smtp_username: str | None = Field(None, alias="SMTP_USERNAME")
    smtp_password: str | None = Field(None, alias="SMTP_PASSWORD")
    smtp_sender: str = Field("premium-support@localhost", alias="SMTP_SENDER")
    # A notification is retried (through the person's contact methods, then in rounds
    # with backoff) for this long before it is given up and dead-lettered.
    send_retry_budget_s: float = Field(900.0, alias="SEND_RETRY_BUDGET_S", gt=0)
    send_retry_initial_s: float = Field(1.0, alias="SEND_RETRY_INITIAL_S", gt=0)
    send_retry_max_s: float = Field(60.0, alias="SEND_RETRY_MAX_S", gt=0)
    # Sent notification keys (sends, ledger, digest entries): a redelivery or replay of
    # their event within this sends nothing; after it, it would (docs/retention.md).
    notification_retention_s: float = Field(7 * DAY_S, alias="NOTIFICATION_RETENTION_S", gt=0)
    # Pages carry an acknowledge link to the ack gateway when this is set (ACK_SECRET,
    # or ACK_SECRET_FILE, signs it); how long a link works.
    ack_base_url: str | None = Field(None, alias="ACK_BASE_URL")
    ack_ttl_s: float = Field(DAY_S, alias="ACK_TTL_S", gt=0)


def ack_links(settings: NotifierSettings) -> AckLinks | None:
    """The acknowledge links, or None without ACK_BASE_URL; a base URL without a usable
    secret stops the start (pages would otherwise go out without the promised link)."""
    if not settings.ack_base_url:
        return None
    secret = read_secret("ACK_SECRET")
    if secret is None or len(secret) < SHORTEST_SECRET:
        problem = f"ACK_BASE_URL is set: set ACK_SECRET (at least {SHORTEST_SECRET} characters)"
        raise ConfigFileError("ACK_SECRET", [(None, problem)])
    return AckLinks(settings.ack_base_url, secret, timedelta(seconds=settings.ack_ttl_s))


def prune_jobs(settings: NotifierSettings) -> Callable[[datetime], list[PruneJob]]:
    """What the notifier's store may forget by a given time (services.runtime.retention)."""
    keys_s = settings.notification_retention_s

    def jobs(now: datetime) -> list[PruneJob]:
        return [
            *ledger_module.prune_jobs(now, settings.outbox_retention_s, keys_s),
            sends_module.prune_job(now, keys_s),
            digest.prune_job(now, keys_s),
        ]

    return jobs


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
    retry = SendRetry(
        budget=timedelta(seconds=settings.send_retry_budget_s),
        initial=timedelta(seconds=settings.send_retry_initial_s),
        longest=timedelta(seconds=settings.send_retry_max_s),
    )
    deliverer = Deliverer(oncall, smtp, ack_links=ack_links(settings))
    digests = DigestQueue(ledger.engine)
    metrics = NotifierMetrics()
    names = Names(settings.amqp_prefix)
    sends = SendQueue(ledger.engine)
    outcomes = Outcomes(sends, ledger, digests, oncall, names, retry, metrics)
    relay = OutboxRelay(
        settings, "notifier.relay", ledger, leader=LeaderLock(ledger.engine, RELAY_LOCK)
    )
    sender = Sender(sends, ledger, deliverer, outcomes, retry, metrics, on_commit=relay.wake)
    notifier = Notifier(ledger, sends, outcomes, oncall, digests, on_commit=sender.wake)
    # The worker checks coverage at once (gaps logged as errors, posted to the team
    # channel), then hourly, and sends team digests.
    worker = NotifierWorker(digests, deliverer, settings, metrics=metrics)
    pruner = Pruner(
        "notifier.pruner",
        ledger.engine,
        prune_jobs(settings),
        settings.prune_every_s,
        settings.prune_batch,
    )
    # NOTE: no input dedup window here: the send queue is the notifier's idempotency, and
    # the window would drop an input replayed from the dead-letter queue.
    handlers = {"#": notifier.handle}
    return ServiceSpec(
        name="notifier",
        handlers=handlers,
        batch_handler=notifier.handle_batch,
        queues=("notifier_urgent", "notifier"),
        workers=(worker.run, sender.run, relay.run, pruner.run),
        metrics=metrics.registry,
        health={
            "store": lambda: ping(ledger.engine),
            "worker": worker.check_alive,
            "sender": sender.check_alive,
            "relay": relay.check_alive,
        },
    )

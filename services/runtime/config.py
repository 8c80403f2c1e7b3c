"""Runtime settings from the environment (DESIGN.md section 6)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672//"


class RuntimeSettings(BaseSettings):
    """Everything the shared runtime reads from the environment; services extend it."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    amqp_url: str = Field(DEFAULT_AMQP_URL, alias="AMQP_URL")
    amqp_prefix: str = Field("", alias="AMQP_PREFIX")
    log_format: str = Field("json", alias="LOG_FORMAT", pattern="^(json|console)$")
    log_level: str = Field("info", alias="LOG_LEVEL")
    # /metrics and /healthz (services.runtime.ops_http); port 0 turns them off. All
    # interfaces by default: a container is scraped and probed from outside.
    metrics_port: int = Field(9100, alias="METRICS_PORT", ge=0, le=65535)
    metrics_host: str = Field("0.0.0.0", alias="METRICS_HOST")

    prefetch: int = Field(256, alias="PREFETCH_COUNT", ge=1, le=65535)
    confirm_timeout_s: float = Field(10.0, alias="CONFIRM_TIMEOUT_S", gt=0)
    blocked_timeout_s: float = Field(30.0, alias="BLOCKED_TIMEOUT_S", gt=0)
    heartbeat_s: int = Field(30, alias="AMQP_HEARTBEAT_S", ge=0)
    ack_settle_s: float = Field(0.5, alias="ACK_SETTLE_S", ge=0)
    max_attempts: int = Field(5, alias="MAX_ATTEMPTS", ge=1)
    retry_initial_s: float = Field(0.5, alias="RETRY_INITIAL_S", gt=0)
    retry_max_s: float = Field(30.0, alias="RETRY_MAX_S", gt=0)
    delivery_limit: int = Field(20, alias="DELIVERY_LIMIT", ge=1)
    max_message_bytes: int = Field(1024 * 1024, alias="MAX_MESSAGE_BYTES", ge=1)
    dedup_window_size: int = Field(100_000, alias="DEDUP_WINDOW_SIZE", ge=0)
    dedup_window_s: float = Field(24 * 3600.0, alias="DEDUP_WINDOW_S", ge=0)
    event_log_max_age: str = Field("30D", alias="EVENT_LOG_MAX_AGE", pattern=r"^\d+[YMDhms]$")

    @property
    def is_memory(self) -> bool:
        return self.amqp_url.startswith("memory://")

"""Runtime settings from the environment (DESIGN.md section 6).

Every variable that can hold a credential (`SECRET_VARIABLES`) may instead name a file
in `<VARIABLE>_FILE` (services.runtime.secrets), and is masked in the settings' repr.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from pydantic import Field
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from services.runtime.secrets import MASK, mask_url, read_secret

DEFAULT_AMQP_URL = "amqp://guest:guest@localhost:5672//"
# Shared by every settings class (the operator's too): a name here is a secret in any of
# them. Webhook secrets are named by the on-call file (`secret_env`), read at send time.
SECRET_VARIABLES = frozenset(
    {"AMQP_URL", "SLA_STORE_URL", "NOTIFIER_STORE_URL", "SMTP_PASSWORD", "MANAGEMENT_URL"}
)


class SecretFiles(PydanticBaseSettingsSource):
    """`X` from the file `X_FILE` names, for each secret variable the class reads."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: `__call__` reads every secret at once

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            alias = field.alias or name
            if alias in SECRET_VARIABLES and os.environ.get(f"{alias}_FILE"):
                found[alias] = read_secret(alias)  # SecretError: one line, no value
        return found


def masked(value: Any) -> Any:
    """A secret setting as a repr may show it: a URL without its password, else ***."""
    if not isinstance(value, str):
        return value
    return mask_url(value) if "://" in value else MASK


class RuntimeSettings(BaseSettings):
    """Everything the shared runtime reads from the environment; services extend it."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    amqp_url: str = Field(DEFAULT_AMQP_URL, alias="AMQP_URL")
    amqp_prefix: str = Field("", alias="AMQP_PREFIX")
    log_format: str = Field("json", alias="LOG_FORMAT", pattern="^(json|console)$")
    log_level: str = Field("info", alias="LOG_LEVEL")
    # /metrics and /healthz (services.runtime.ops_http); port 0 turns them off. Local
    # only by default: a container that is scraped from outside sets METRICS_HOST=0.0.0.0.
    metrics_port: int = Field(9100, alias="METRICS_PORT", ge=0, le=65535)
    metrics_host: str = Field("127.0.0.1", alias="METRICS_HOST")

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
    # At each (re)connect a service declares the whole topology (`declare`: needs configure
    # rights on every name; dev, tests, the demo) or only checks passively that its own
    # queues and exchanges exist (`passive`: no right needed; compose, least privilege).
    topology_mode: str = Field("declare", alias="DECLARE_TOPOLOGY", pattern="^(declare|passive)$")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        files = SecretFiles(settings_cls)
        return init_settings, env_settings, files, dotenv_settings, file_secret_settings

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        fields = type(self).model_fields
        for name, value in super().__repr_args__():
            field = fields.get(name or "")
            secret = field is not None and (field.alias or name) in SECRET_VARIABLES
            yield name, masked(value) if secret else value

    @property
    def is_memory(self) -> bool:
        return self.amqp_url.startswith("memory://")

"""Intake's one wiring place: settings -> directory -> handlers -> runtime spec.

Intake refuses to start without ACCOUNTS_FILE: without the directory every submitter
is `unknown` and no ticket is premium, so no SLA clock starts and nobody is ever
paged, which would otherwise look like a quiet day. `ACCOUNTS_FILE=none` runs without
one on purpose (a warning at start says what that means).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import Field, field_validator

from services.intake.accounts import AccountsDirectory, AccountsError
from services.intake.handlers import IntakeHandlers
from services.intake.urgency import may_page
from services.runtime.app import ServiceSpec
from services.runtime.config import RuntimeSettings

log = structlog.get_logger("intake")

NO_ACCOUNTS = "none"
MISSING_ACCOUNTS = (
    "not set; intake needs the accounts directory (YAML, see examples/accounts.yaml) to "
    "know which portals bought Premium Support and who their Super Admins are; without "
    "it no ticket is premium and no SLA clock or page ever happens. Set ACCOUNTS_FILE to "
    "the file, or ACCOUNTS_FILE=none to run without one on purpose"
)


class IntakeSettings(RuntimeSettings):
    # NOTE: intake reads its whole prefetch window ahead to handle marked requests first
    # (services.intake.urgency); a wide window is what lets one behind a burst of chats
    # jump the line. Memory stays bounded by a byte budget (runtime.arrivals).
    prefetch: int = Field(
        4096,
        alias="PREFETCH_COUNT",
        ge=1,
        le=65535,
        description="Unacked deliveries intake holds: its read-ahead window",
    )
    accounts_file: Literal["none"] | Path | None = Field(
        None,
        alias="ACCOUNTS_FILE",
        union_mode="left_to_right",
        description="The accounts directory; required ('none' runs without one on purpose)",
    )
    phone_region: str | None = Field(
        None, alias="PHONE_DEFAULT_REGION", description="ISO country for numbers without +"
    )
    max_clock_skew_s: float = Field(
        300.0,
        alias="MAX_CLOCK_SKEW_S",
        ge=0,
        description="A create or update time later than intake's clock plus this is "
        "replaced by the time intake received it",
    )

    @field_validator("accounts_file", mode="before")
    @classmethod
    def _none_on_purpose(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return None  # ACCOUNTS_FILE= (empty) is as good as unset
            if value.strip().lower() == NO_ACCOUNTS:
                return NO_ACCOUNTS
        return value


def load_directory(setting: Path | Literal["none"] | None) -> AccountsDirectory:
    """The directory ACCOUNTS_FILE names; AccountsError when it is unset or unusable."""
    if setting is None:
        raise AccountsError("ACCOUNTS_FILE", [(None, MISSING_ACCOUNTS)])
    if setting == NO_ACCOUNTS:
        log.warning(
            "intake.no_accounts_file",
            detail="ACCOUNTS_FILE=none: every submitter is unknown and no ticket is "
            "premium, so no SLA clock starts and nobody is paged",
        )
        return AccountsDirectory([])
    directory = AccountsDirectory.load(setting)
    if directory.account_count == 0:
        log.warning(
            "intake.empty_accounts_file",
            file=str(setting),
            detail="the accounts file lists no accounts: no ticket is premium",
        )
    return directory


def bootstrap(settings: IntakeSettings) -> ServiceSpec:
    directory = load_directory(settings.accounts_file)
    handlers = IntakeHandlers(
        directory,
        phone_region=settings.phone_region,
        max_clock_skew=timedelta(seconds=settings.max_clock_skew_s),
    )
    return ServiceSpec(
        name="intake", handlers=handlers.routes(), urgent=may_page, prefetch=settings.prefetch
    )

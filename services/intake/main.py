"""Intake's one wiring place: settings -> directory -> handlers -> runtime spec."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.intake.accounts import AccountsDirectory
from services.intake.handlers import IntakeHandlers
from services.runtime.app import ServiceSpec
from services.runtime.config import RuntimeSettings


class IntakeSettings(RuntimeSettings):
    accounts_file: Path | None = Field(None, alias="ACCOUNTS_FILE")
    phone_region: str | None = Field(
        None, alias="PHONE_DEFAULT_REGION", description="ISO country for numbers without +"
    )


def bootstrap(settings: IntakeSettings) -> ServiceSpec:
    directory = AccountsDirectory.load(settings.accounts_file)
    handlers = IntakeHandlers(directory, phone_region=settings.phone_region)
    return ServiceSpec(name="intake", handlers=handlers.routes())

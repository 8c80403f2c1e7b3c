"""The accounts directory (ACCOUNTS_FILE): who is a designated Super Admin of which portal.

A file that cannot be used raises AccountsError (a ConfigFileError) naming the file, the
line and the problem, at start, never later on a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.ticket import SubmitterRole
from services.intake.contacts import normalize_phone_number
from services.runtime.errors import PermanentError
from services.runtime.yaml_files import (
    ConfigFileError,
    YamlInvalid,
    YamlProblem,
    parse,
    validate_yaml,
)


class AccountsError(ConfigFileError):
    """An accounts directory that cannot be used (or none given where one is needed)."""


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str | None = None
    email: str | None = None
    phone: str | None = Field(default=None, description="Any written form; kept as E.164")

    @field_validator("phone")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return normalize_phone_number(value)
        except PermanentError as exc:
            raise ValueError(exc.detail) from exc


class Account(BaseModel):
    model_config = ConfigDict(extra="forbid")
    portal_id: int
    name: str
    premium_support: bool = False
    timezone: str = "UTC"
    super_admins: list[Contact] = Field(default_factory=list)
    users: list[Contact] = Field(default_factory=list)


class AccountsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    accounts: list[Account] = Field(default_factory=list)

    @field_validator("accounts")
    @classmethod
    def _unique_portals(cls, accounts: list[Account]) -> list[Account]:
        seen: set[int] = set()
        for account in accounts:
            if account.portal_id in seen:
                raise ValueError(f"portal_id {account.portal_id} is listed twice")
            seen.add(account.portal_id)
        return accounts


@dataclass(frozen=True)
class Identity:
    """What a request says about its submitter; any field may be missing."""

    user_id: str | None = None
    email: str | None = None
    phone: str | None = None


def _matches(contact: Contact, who: Identity) -> bool:
    return bool(
        (who.user_id and contact.user_id == who.user_id)
        or (who.email and contact.email and contact.email.lower() == who.email.lower())
        or (who.phone and contact.phone == who.phone)
    )


class AccountsDirectory:
    def __init__(self, accounts: list[Account]) -> None:
        self._by_portal = {account.portal_id: account for account in accounts}

    @classmethod
    def load(cls, path: Path | str) -> AccountsDirectory:
        """Read and validate the file; AccountsError names the file, line and problem.
        An empty file is an empty directory."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AccountsError(
                str(path), [(None, f"cannot read the accounts file: {exc}")]
            ) from None
        try:
            if parse(text)[0] is None:  # empty, or only comments
                return cls([])
            loaded = validate_yaml(AccountsFile, text, "a mapping with accounts")
        except YamlProblem as exc:
            raise AccountsError(str(path), [(exc.line, exc.message)]) from None
        except YamlInvalid as exc:
            raise AccountsError(str(path), exc.problems) from None
        return cls(loaded.accounts)

    @property
    def account_count(self) -> int:
        return len(self._by_portal)

    def account(self, portal_id: int | None) -> Account | None:
        return None if portal_id is None else self._by_portal.get(portal_id)

    def role(self, account: Account | None, who: Identity) -> SubmitterRole:
        if account is None:
            return "unknown"
        if any(_matches(c, who) for c in account.super_admins):
            return "super_admin"
        if any(_matches(c, who) for c in account.users):
            return "user"
        return "unknown"

    def portal_of(self, who: Identity) -> int | None:
        """For raw mail with no portal hint: the one account that knows this sender."""
        found = {
            a.portal_id
            for a in self._by_portal.values()
            for c in a.super_admins + a.users
            if _matches(c, who)
        }
        return found.pop() if len(found) == 1 else None

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


@dataclass(frozen=True, slots=True)
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


class _Contacts:
    """One account's contacts of one role, indexed by what identifies them: a role is
    found in a few set lookups, however many people an account lists (`_matches`
    over every contact is the definition, and the tests hold the two to each other)."""

    __slots__ = ("emails", "phones", "user_ids")

    def __init__(self, contacts: list[Contact]) -> None:
        self.user_ids = {c.user_id for c in contacts if c.user_id}
        self.emails = {c.email.lower() for c in contacts if c.email}
        self.phones = {c.phone for c in contacts if c.phone}

    def know(self, who: Identity) -> bool:
        return bool(
            (who.user_id and who.user_id in self.user_ids)
            or (who.email and who.email.lower() in self.emails)
            or (who.phone and who.phone in self.phones)
        )


class AccountsDirectory:
    def __init__(self, accounts: list[Account]) -> None:
        self._by_portal = {account.portal_id: account for account in accounts}
        self._roles = {
            a.portal_id: (_Contacts(a.super_admins), _Contacts(a.users)) for a in accounts
        }

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
        roles = self._roles.get(account.portal_id)
        if roles is None or self._by_portal[account.portal_id] is not account:
            roles = (_Contacts(account.super_admins), _Contacts(account.users))  # not ours
        admins, users = roles
        if admins.know(who):
            return "super_admin"
        return "user" if users.know(who) else "unknown"

    def portal_of(self, who: Identity) -> int | None:
        """For raw mail with no portal hint: the one account that knows this sender."""
        found = {
            a.portal_id
            for a in self._by_portal.values()
            for c in a.super_admins + a.users
            if _matches(c, who)
        }
        return found.pop() if len(found) == 1 else None

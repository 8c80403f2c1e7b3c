"""The accounts directory: loading ACCOUNTS_FILE, submitter roles, portal lookup."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.intake.accounts import (
    Account,
    AccountsDirectory,
    AccountsError,
    Contact,
    Identity,
    _matches,
)
from services.runtime.yaml_files import ConfigFileError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "accounts.yaml"


@pytest.fixture(scope="module")
def directory() -> AccountsDirectory:
    return AccountsDirectory.load(EXAMPLE)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "directory.yml"
    path.write_text(text, encoding="utf-8")
    return path


# --- loading ----------------------------------------------------------------------------


def test_example_file_loads(directory: AccountsDirectory) -> None:
    acme = directory.account(4411)
    globex = directory.account(5522)
    initech = directory.account(6633)

    assert acme is not None and globex is not None and initech is not None
    assert (acme.name, acme.premium_support, acme.timezone) == (
        "Acme Corp",
        True,
        "Europe/Amsterdam",
    )
    assert acme.super_admins == [
        Contact(user_id="u-19", email="ana@acme.example", phone="+31205550134")
    ]
    assert acme.users == [Contact(user_id="u-20", email="bo@acme.example")]
    assert (globex.name, globex.timezone) == ("Globex", "America/New_York")
    assert initech.premium_support is False
    assert initech.users == []


def test_unknown_and_missing_portals(directory: AccountsDirectory) -> None:
    assert directory.account(9999) is None
    assert directory.account(None) is None


def test_an_empty_file_gives_an_empty_directory(tmp_path: Path) -> None:
    for text in ("", "# nobody bought Premium Support yet\n"):
        loaded = AccountsDirectory.load(write(tmp_path, text))
        assert loaded.account_count == 0
        assert loaded.account(4411) is None
        assert loaded.portal_of(Identity(email="ana@acme.example")) is None


def test_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "accounts:\n  - {portal_id: 1, name: Tiny}\n")
    account = AccountsDirectory.load(path).account(1)

    assert account == Account(portal_id=1, name="Tiny")
    assert account is not None
    assert (account.premium_support, account.timezone, account.super_admins) == (False, "UTC", [])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("accounts: [\n  - {portal_id: 4411, name: Acme\n", "line 2"),
        ("accounts:\n  - name: Acme\n    premium_support: true\n", "portal_id"),
        ("accounts:\n  - {portal_id: 4411, name: Acme, premium: true}\n", "premium"),
        (
            "accounts:\n  - portal_id: 4411\n    name: Acme\n    super_admins:\n"
            "      - {user_id: u-19, mail: ana@acme.example}\n",
            "mail",
        ),
        ("acounts:\n  - {portal_id: 4411, name: Acme}\n", "acounts"),
        ("accounts:\n  - {portal_id: acme, name: Acme}\n", "portal_id"),
        ("- {portal_id: 4411, name: Acme}\n", "expected a mapping with accounts"),
        (
            "accounts:\n  - portal_id: 4411\n    name: Acme\n    super_admins:\n"
            "      - {user_id: u-19, phone: +31205550134}\n",
            "phone",
        ),
    ],
    ids=[
        "bad-yaml",
        "missing-portal-id",
        "unknown-account-key",
        "unknown-contact-key",
        "unknown-top-level-key",
        "portal-id-not-int",
        "top-level-list",
        "unquoted-phone",
    ],
)
def test_malformed_file_raises_an_accounts_error_naming_the_file_and_line(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = write(tmp_path, text)

    with pytest.raises(AccountsError) as info:
        AccountsDirectory.load(path)

    message = str(info.value)
    assert message.startswith(f"{path}, line ")
    assert problem in message
    assert isinstance(info.value, ConfigFileError)  # the CLI reports these in one line


def test_the_line_points_at_the_mistake(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "accounts:\n  - portal_id: 4411\n    name: Acme\n  - portal_id: 5522\n"
        "    name: Globex\n    premium: true\n",
    )

    with pytest.raises(AccountsError) as info:
        AccountsDirectory.load(path)

    assert str(info.value) == f"{path}, line 6: accounts[1].premium: unknown key 'premium'"


def test_missing_file_raises_an_accounts_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"

    with pytest.raises(AccountsError) as info:
        AccountsDirectory.load(path)

    assert str(info.value).startswith(f"{path}: cannot read the accounts file")


# --- roles ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("portal_id", "who", "role"),
    [
        (4411, Identity(user_id="u-19"), "super_admin"),
        (4411, Identity(email="ana@acme.example"), "super_admin"),
        (4411, Identity(email="ANA@Acme.EXAMPLE"), "super_admin"),
        (4411, Identity(phone="+31205550134"), "super_admin"),
        (4411, Identity(user_id="u-99", email="ana@acme.example"), "super_admin"),
        (4411, Identity(user_id="u-20"), "user"),
        (4411, Identity(email="Bo@Acme.Example"), "user"),
        (4411, Identity(user_id="u-99", email="eve@acme.example"), "unknown"),
        (4411, Identity(phone="+31 20 555 0134"), "unknown"),  # not E.164: no match
        (4411, Identity(email="hank@globex.example"), "unknown"),  # another portal's admin
        (4411, Identity(), "unknown"),
        (5522, Identity(phone="+12125550147"), "super_admin"),
        (5522, Identity(user_id="g-2"), "user"),
        (6633, Identity(email="peter@initech.example"), "super_admin"),
        (9999, Identity(user_id="u-19"), "unknown"),
    ],
)
def test_role(directory: AccountsDirectory, portal_id: int, who: Identity, role: str) -> None:
    assert directory.role(directory.account(portal_id), who) == role


_IDS = st.sampled_from([None, "", "u-1", "u-2"])
_EMAILS = st.sampled_from([None, "", "a@x.example", "A@X.example", "b@x.example"])
_PHONES = st.sampled_from([None, "+31205550134", "+12125550147"])
_CONTACTS = st.lists(st.builds(Contact, user_id=_IDS, email=_EMAILS, phone=_PHONES), max_size=4)


def _role_by_definition(account: Account, who: Identity) -> str:
    if any(_matches(c, who) for c in account.super_admins):
        return "super_admin"
    return "user" if any(_matches(c, who) for c in account.users) else "unknown"


@given(_CONTACTS, _CONTACTS, st.builds(Identity, user_id=_IDS, email=_EMAILS, phone=_PHONES))
def test_the_role_index_agrees_with_matching_every_contact(
    admins: list[Contact], users: list[Contact], who: Identity
) -> None:
    account = Account(portal_id=1, name="X", super_admins=admins, users=users)
    expected = _role_by_definition(account, who)

    assert AccountsDirectory([account]).role(account, who) == expected
    # an account the directory does not hold is still read by its contacts
    assert AccountsDirectory([]).role(account, who) == expected


def test_role_without_an_account_is_unknown(directory: AccountsDirectory) -> None:
    assert directory.role(None, Identity(user_id="u-19", email="ana@acme.example")) == "unknown"


def test_super_admin_wins_over_user() -> None:
    both = Contact(user_id="x-1", email="x@example.com")
    account = Account(portal_id=1, name="X", super_admins=[both], users=[both])
    directory = AccountsDirectory([account])

    assert directory.role(account, Identity(email="x@example.com")) == "super_admin"


def test_empty_identity_matches_no_contact_with_missing_fields() -> None:
    account = Account(portal_id=1, name="X", super_admins=[Contact()], users=[Contact()])
    directory = AccountsDirectory([account])

    assert directory.role(account, Identity()) == "unknown"
    assert directory.role(account, Identity(email="", user_id="", phone="")) == "unknown"


# --- portal_of --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "portal"),
    [
        (Identity(email="ana@acme.example"), 4411),
        (Identity(email="BO@ACME.EXAMPLE"), 4411),
        (Identity(user_id="g-2"), 5522),
        (Identity(phone="+12125550147"), 5522),
        (Identity(email="peter@initech.example"), 6633),
        (Identity(email="stranger@example.com"), None),
        (Identity(), None),
    ],
)
def test_portal_of(directory: AccountsDirectory, who: Identity, portal: int | None) -> None:
    assert directory.portal_of(who) == portal


def test_portal_of_is_none_when_the_sender_belongs_to_two_accounts() -> None:
    shared = Contact(email="consultant@example.com")
    directory = AccountsDirectory(
        [
            Account(portal_id=1, name="A", super_admins=[shared]),
            Account(portal_id=2, name="B", users=[shared]),
        ]
    )

    assert directory.portal_of(Identity(email="consultant@example.com")) is None


def test_portal_of_same_account_matched_twice_is_that_account() -> None:
    account = Account(
        portal_id=7,
        name="A",
        super_admins=[Contact(email="a@example.com")],
        users=[Contact(user_id="a-1")],
    )
    directory = AccountsDirectory([account])

    assert directory.portal_of(Identity(user_id="a-1", email="a@example.com")) == 7

"""Contact normalization: phone numbers to E.164, email addresses lower-cased."""

from __future__ import annotations

import re
from email.utils import parseaddr

import phonenumbers

from services.runtime.errors import PermanentError


def normalize_phone_number(raw: str, region: str | None = None) -> str:
    """'+31 20 555 0134' -> '+31205550134'. Without a country code, `region` decides."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise PermanentError(
            f"caller_number {raw!r} is not a phone number: {exc}", reason="invalid_phone_number"
        ) from exc
    if not phonenumbers.is_possible_number(number):
        raise PermanentError(
            f"caller_number {raw!r} is not a possible phone number", reason="invalid_phone_number"
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# The shapes forms send: "Name <addr>" or a bare address. Anything else (quotes,
# comments, groups) goes through the stdlib parser, which is ~6x slower.
_SIMPLE = re.compile(
    r"\s*(?:([^<>\"(),;:@]*?)\s*<([^<>\s\"(),;:@]+@[^<>\s\"(),;:@]+)>|([^<>\s\"(),;:@]+@[^<>\s\"(),;:@]+))\s*"
)


def normalize_email_address(raw: str) -> tuple[str | None, str]:
    """'Ana Ruiz <Ana@Acme.example>' -> ('Ana Ruiz', 'ana@acme.example')."""
    simple = _SIMPLE.fullmatch(raw)
    if simple:
        name, address = simple.group(1) or "", simple.group(2) or simple.group(3)
    else:
        name, address = parseaddr(raw)
    address = address.strip().lower()
    if "@" not in address or address.startswith("@") or address.endswith("@"):
        raise PermanentError(f"from {raw!r} has no email address", reason="invalid_address")
    return (name.strip() or None), address

"""The acknowledge token (services.common.ack_token) and PagerDuty's webhook signature."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from services.ack_gateway import pagerduty
from services.common.ack_token import (
    AckLinks,
    TokenError,
    sign_token,
    token_id_for,
    token_ref,
    verify_token,
)

SECRET = "ack-secret-for-unit-tests"
T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
TID = "T-email-0207b44e3d661cc0"
KEY = f"{TID}:opened:1:kim:email"


def token(expires: datetime = T0 + timedelta(hours=1), secret: str = SECRET) -> str:
    return sign_token(secret, TID, "kim", KEY, expires)


def test_a_signed_token_names_ticket_person_key_and_expiry() -> None:
    claim = verify_token(SECRET, token(), T0)
    assert (claim.ticket_id, claim.person, claim.notification_key) == (TID, "kim", KEY)
    assert claim.expires_at == int((T0 + timedelta(hours=1)).timestamp())
    assert claim.token_id == token_id_for(KEY)


def test_a_token_is_url_safe_compact_and_holds_no_secret() -> None:
    value = token()
    assert len(value) < 240
    assert set(value) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert SECRET not in value and SECRET.encode() not in base64.urlsafe_b64decode(
        value.split(".")[0] + "=="
    )


def test_an_expired_token_is_refused_naming_its_ticket() -> None:
    with pytest.raises(TokenError) as refused:
        verify_token(SECRET, token(), T0 + timedelta(hours=1))
    assert refused.value.reason == "expired"
    assert refused.value.claim is not None and refused.value.claim.ticket_id == TID


def test_a_tampered_payload_is_forged() -> None:
    payload, signature = token().split(".")
    fields = json.loads(base64.urlsafe_b64decode(payload + "=="))
    fields[1] = "T-email-ffffffffffffffff"  # another ticket, same signature
    other = base64.urlsafe_b64encode(json.dumps(fields).encode()).rstrip(b"=").decode()
    for bad in (f"{other}.{signature}", f"{payload}.{signature[:-2]}AA", f"{payload}."):
        with pytest.raises(TokenError) as refused:
            verify_token(SECRET, bad, T0)
        assert refused.value.reason == "forged"


def test_a_token_of_another_secret_is_forged() -> None:
    with pytest.raises(TokenError) as refused:
        verify_token(SECRET, token(secret="some-other-secret-of-length"), T0)
    assert refused.value.reason == "forged"


@pytest.mark.parametrize("bad", ["", "no-dot", ".sig", "é.x", "a" * 3000 + ".b"])
def test_malformed_tokens_are_refused(bad: str) -> None:
    with pytest.raises(TokenError) as refused:
        verify_token(SECRET, bad, T0)
    assert refused.value.reason == "malformed"


def test_a_short_secret_cannot_sign() -> None:
    with pytest.raises(ValueError, match="at least"):
        token(secret="short")


def test_a_resent_page_carries_a_token_of_the_same_id() -> None:
    """A retry renders the page again later: another expiry, the same token id, so
    the second copy is a replay of the first."""
    later = verify_token(SECRET, token(T0 + timedelta(hours=2)), T0)
    assert later.token_id == verify_token(SECRET, token(), T0).token_id
    assert later.token_id != token_id_for(f"{TID}:breached:1:kim:email")


def test_the_link_carries_the_token_under_the_base_url() -> None:
    links = AckLinks("https://ack.example/ps/", SECRET, timedelta(minutes=30))
    url = links.url(TID, "kim", KEY, T0)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "ack.example", "/ps/ack")
    claim = verify_token(SECRET, parse_qs(parts.query)["t"][0], T0 + timedelta(minutes=29))
    assert claim.ticket_id == TID


def test_token_ref_is_a_short_hash_not_the_token() -> None:
    value = token()
    assert len(token_ref(value)) == 12 and token_ref(value) not in value


# --- PagerDuty ------------------------------------------------------------------------


def pd_body(event_type: str = "incident.acknowledged", key: str = f"{TID}:opened") -> bytes:
    return json.dumps(
        {
            "event": {
                "id": "01DEN5C0HQYB0QJ6Q3F6TJ1YIJ",
                "event_type": event_type,
                "agent": {"id": "PLH1HKV", "summary": "Kim\r\nInjected: line", "type": "user"},
                "data": {"id": "PGR0VU2", "type": "incident", "incident_key": key},
            }
        }
    ).encode()


def sign_pd(body: bytes, secret: str = SECRET) -> str:
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_pagerduty_signature_verified_also_among_rotated_ones() -> None:
    body = pd_body()
    assert pagerduty.signature_ok(SECRET, body, sign_pd(body))
    assert pagerduty.signature_ok(SECRET, body, f"v1={'0' * 64}, {sign_pd(body)}")
    assert not pagerduty.signature_ok(SECRET, body, sign_pd(body, "another-secret-entirely"))
    assert not pagerduty.signature_ok(SECRET, body + b" ", sign_pd(body))
    assert not pagerduty.signature_ok(SECRET, body, None)
    assert not pagerduty.signature_ok(SECRET, body, sign_pd(body).removeprefix("v1="))


def test_pagerduty_acknowledgement_maps_the_dedup_key_to_the_ticket() -> None:
    ack = pagerduty.parse(pd_body())
    assert ack is not None
    assert ack.ticket_id == TID and ack.by == "pagerduty:Kim Injected: line"
    assert pagerduty.parse(pd_body("incident.resolved")) is None
    assert pagerduty.parse(pd_body(key="someone-elses-incident")) is None

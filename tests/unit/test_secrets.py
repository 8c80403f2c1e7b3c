"""Secrets from variables or files (services.runtime.secrets), the settings that read them,
and the texts that must never show them."""

from __future__ import annotations

import base64
import smtplib
import socket
from pathlib import Path

import pytest

from services.notifier.channels_base import RetryPolicy
from services.notifier.channels_http import ChatWebhookChannel
from services.notifier.channels_smtp import auth_forms, smtp_error
from services.notifier.delivery import SmtpSettings, webhook_secret
from services.notifier.main import NotifierSettings
from services.operator.config import OperatorSettings
from services.runtime.config import RuntimeSettings
from services.runtime.errors import PermanentError, TransientError
from services.runtime.secrets import SecretError, mask_url, read_secret, redact, url_secrets
from services.sla_timer.main import SlaSettings

NO_RETRY = RetryPolicy(attempts=1)
SLACK = "https://hooks.slack.com/services/T0001AAAA/B0002BBBB/xoxbsecretTOKEN1234567890"


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# --- read_secret -----------------------------------------------------------------------


def test_a_secret_comes_from_its_variable_or_from_its_file(tmp_path: Path) -> None:
    assert read_secret("X", {"X": "from-env"}) == "from-env"
    assert read_secret("X", {"X_FILE": write(tmp_path / "x", "from-file\n")}) == "from-file"
    assert read_secret("X", {}) is None
    assert read_secret("X", {"X": ""}) is None  # `X=` as compose writes it: unset


def test_only_one_trailing_newline_is_dropped(tmp_path: Path) -> None:
    assert read_secret("X", {"X_FILE": write(tmp_path / "a", "pw\r\n")}) == "pw"
    assert read_secret("X", {"X_FILE": write(tmp_path / "b", " pw \n\n")}) == " pw \n"
    assert read_secret("X", {"X_FILE": write(tmp_path / "c", "pw")}) == "pw"


def test_both_set_is_one_clear_line_without_the_value(tmp_path: Path) -> None:
    env = {"SMTP_PASSWORD": "hunter22", "SMTP_PASSWORD_FILE": write(tmp_path / "p", "pw")}
    with pytest.raises(SecretError) as raised:
        read_secret("SMTP_PASSWORD", env)
    message = str(raised.value)
    assert message == "SMTP_PASSWORD_FILE: SMTP_PASSWORD is set as well; set one of them, not both"
    assert "hunter22" not in message and "\n" not in message


@pytest.mark.parametrize("kind", ["missing", "directory", "binary"])
def test_an_unreadable_file_is_one_line_naming_the_variable_and_path(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "secret"
    if kind == "directory":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(b"\xff\xfe\x00pw")
    with pytest.raises(SecretError) as raised:
        read_secret("AMQP_URL", {"AMQP_URL_FILE": str(path)})
    message = str(raised.value)
    assert message.startswith("AMQP_URL_FILE: ") and str(path) in message
    assert "\n" not in message
    expected = {"missing": "No such file", "directory": "Is a directory", "binary": "UTF-8"}
    assert expected[kind] in message


# --- the services' settings --------------------------------------------------------------


def test_the_notifiers_settings_read_every_secret_from_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    amqp = "amqp://notifier:s3cr3t-amqp@rabbitmq:5672/premium-support"
    store = "postgresql://notifier:s3cr3t-db@postgres:5432/notifier"
    monkeypatch.setenv("AMQP_URL_FILE", write(tmp_path / "amqp", amqp + "\n"))
    monkeypatch.setenv("NOTIFIER_STORE_URL_FILE", write(tmp_path / "store", store + "\n"))
    monkeypatch.setenv("SMTP_PASSWORD_FILE", write(tmp_path / "smtp", "s3cr3t-smtp\n"))
    monkeypatch.setenv("ONCALL_FILE", "oncall.yaml")
    for name in ("AMQP_URL", "NOTIFIER_STORE_URL", "SMTP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    settings = NotifierSettings()
    assert settings.amqp_url == amqp
    assert settings.notifier_store_url == store
    assert settings.smtp_password == "s3cr3t-smtp"
    shown = repr(settings) + str(settings)
    assert "s3cr3t" not in shown
    assert "amqp://notifier:***@rabbitmq:5672/premium-support" in shown


def test_sla_timer_and_operator_store_urls_come_from_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = "postgresql://sla_timer:s3cr3t@postgres:5432/sla_timer"
    monkeypatch.setenv("SLA_STORE_URL_FILE", write(tmp_path / "store", store + "\n"))
    monkeypatch.delenv("SLA_STORE_URL", raising=False)
    assert SlaSettings().sla_store_url == store
    assert OperatorSettings().sla_store_url == store


def test_a_variable_and_its_file_both_set_stop_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMQP_URL", "amqp://guest:guest@localhost:5672//")
    monkeypatch.setenv("AMQP_URL_FILE", write(tmp_path / "amqp", "amqp://x:y@h//"))
    with pytest.raises(SecretError, match=r"^AMQP_URL_FILE: AMQP_URL is set as well"):
        RuntimeSettings()


def test_a_setting_given_in_code_wins_over_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMQP_URL_FILE", write(tmp_path / "amqp", "amqp://x:y@h//"))
    monkeypatch.delenv("AMQP_URL", raising=False)
    assert RuntimeSettings(AMQP_URL="memory://").amqp_url == "memory://"


def test_the_smtp_settings_repr_leaves_the_password_out() -> None:
    smtp = SmtpSettings("mail", 587, "ps@support.example", True, "ps", "s3cr3t-smtp")
    assert "s3cr3t" not in repr(smtp)


def test_a_signed_webhooks_secret_comes_from_its_variable_or_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HOOK_SECRET", raising=False)
    monkeypatch.setenv("HOOK_SECRET_FILE", write(tmp_path / "hook", "hmac-key\n"))
    assert webhook_secret("HOOK_SECRET") == "hmac-key"
    assert webhook_secret(None) == ""
    monkeypatch.setenv("HOOK_SECRET_FILE", str(tmp_path / "gone"))
    with pytest.raises(PermanentError, match="HOOK_SECRET_FILE: cannot read") as raised:
        webhook_secret("HOOK_SECRET")
    assert raised.value.reason == "config"


# --- texts that must not show a secret ---------------------------------------------------


def test_a_webhook_url_is_masked_whole_and_in_parts() -> None:
    hidden = url_secrets(SLACK + "?token=qs-Secret-99")
    token = "xoxbsecretTOKEN1234567890"
    for text in (
        f"POST {SLACK}?token=qs-Secret-99 failed",
        "the endpoint said: no such path /services/T0001AAAA/B0002BBBB/" + token,
        f"invalid token {token}",
        "bad query token=qs-Secret-99",
    ):
        masked = redact(text, hidden)
        assert token not in masked and "qs-Secret-99" not in masked, masked
        assert "***" in masked
    # Words of the path are not secrets: texts stay readable.
    assert redact("services are down", hidden) == "services are down"


def test_a_url_shows_its_user_but_not_its_password() -> None:
    assert mask_url("amqp://intake:pw@rabbitmq:5672/ps") == "amqp://intake:***@rabbitmq:5672/ps"
    assert mask_url("sla_timer.db") == "sla_timer.db"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_refused_webhook_names_its_host_only() -> None:
    url = f"http://127.0.0.1:{closed_port()}/services/T1/B2/tok3n-MARKER-0001?k=MARKER-q"
    with (
        ChatWebhookChannel(url, timeout=2, retry=NO_RETRY) as hook,
        pytest.raises(TransientError) as raised,
    ):
        hook.send({"text": "hi"})
    assert "MARKER" not in str(raised.value)
    assert "chat webhook at 127.0.0.1" in str(raised.value)
    assert raised.value.__cause__ is None  # httpx's exception (its request has the URL)


def test_smtp_errors_mask_the_password_and_its_auth_encodings() -> None:
    forms = auth_forms("ps", "pw-MARKER-smtp")
    plain = base64.b64encode(b"\0ps\0pw-MARKER-smtp").decode()
    login = base64.b64encode(b"pw-MARKER-smtp").decode()
    refused = smtplib.SMTPAuthenticationError(535, f"bad credentials {plain} {login}".encode())
    error = smtp_error(refused, forms)
    assert isinstance(error, PermanentError) and error.reason == "smtp_rejected"
    assert plain not in str(error) and login not in str(error) and "MARKER" not in str(error)
    echoed = smtp_error(smtplib.SMTPServerDisconnected("lost after AUTH pw-MARKER-smtp"), forms)
    assert "MARKER" not in str(echoed) and echoed.reason == "smtp_unavailable"

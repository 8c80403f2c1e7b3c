"""What `oncall check` looks at beside coverage: would the first page fail for want of
something outside the on-call file? A signed webhook's secret that is not set, email
without SMTP_HOST, an SMTP server that does not answer, or that lacks the STARTTLS or
AUTH it is configured to use (the session goes as far as AUTH; nothing is sent).

The SMTP steps are those of services.notifier.channels_smtp; each problem is one line
naming what to check. The password is never printed.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field

from services.notifier.oncall import OnCall, email_needed, unset_secrets
from services.runtime.secrets import read_secret
from services.runtime.yaml_files import ConfigFileError

TIMEOUT_S = 5.0


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def where(self) -> str:
        return f"SMTP server {self.host}:{self.port}"


def smtp_problem(target: SmtpTarget, timeout: float = TIMEOUT_S) -> str | None:
    """None when a session up to AUTH works as configured; else what fails, one line."""
    if (target.username is None) != (target.password is None):
        return "SMTP_USERNAME and SMTP_PASSWORD must be set together"
    try:
        smtp = smtplib.SMTP(target.host, target.port, timeout=timeout)
    except (OSError, smtplib.SMTPException) as exc:
        return f"cannot reach the {target.where}: {exc}: check SMTP_HOST and SMTP_PORT"
    try:
        return _session(smtp, target)
    except smtplib.SMTPAuthenticationError as exc:
        return (
            f"the {target.where} refused the login of {target.username!r} ({exc.smtp_code}): "
            "check SMTP_USERNAME and SMTP_PASSWORD"
        )
    except ssl.SSLError as exc:  # an OSError: before the generic case
        return f"STARTTLS with the {target.where} failed: {exc}"
    except (OSError, smtplib.SMTPException) as exc:
        return f"the {target.where} failed: {type(exc).__name__}: {exc}"
    finally:
        smtp.close()


def _session(smtp: smtplib.SMTP, target: SmtpTarget) -> str | None:
    smtp.ehlo()
    if target.starttls:
        if not smtp.has_extn("starttls"):
            return f"the {target.where} offers no STARTTLS, but SMTP_STARTTLS is set"
        smtp.starttls(context=ssl.create_default_context())
        smtp.ehlo()
    if target.username is not None:
        if not smtp.has_extn("auth"):
            tls = "" if target.starttls else " (without STARTTLS; set SMTP_STARTTLS if it needs it)"
            return f"the {target.where} offers no AUTH{tls}, but SMTP_USERNAME is set"
        smtp.login(target.username, target.password or "")
    smtp.quit()
    return None


def _secret_problems(oncall: OnCall) -> list[str]:
    unusable: list[str] = []

    def secret(variable: str) -> str | None:
        try:
            return read_secret(variable)
        except ConfigFileError as exc:  # set twice, or a file that cannot be read
            unusable.append(str(exc))
            return "unusable"  # said below, not as "not set"

    return unset_secrets(oncall, secret) + unusable


def first_send_problems(oncall: OnCall, smtp: SmtpTarget | None) -> list[str]:
    """One line per thing the notifier's first send would fail on; empty when none."""
    problems = _secret_problems(oncall)
    if email_needed(oncall):
        if smtp is None:
            problems.append("email is a contact method, but SMTP_HOST is not set")
        elif (problem := smtp_problem(smtp)) is not None:
            problems.append(problem)
    return problems


def smtp_target() -> SmtpTarget | None:
    """The notifier's SMTP settings as it reads them; None without SMTP_HOST."""
    from services.notifier.main import NotifierSettings
    from services.operator.guard import load_settings

    settings = load_settings(NotifierSettings)
    if not settings.smtp_host:
        return None
    return SmtpTarget(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_starttls,
        settings.smtp_username,
        settings.smtp_password,
    )

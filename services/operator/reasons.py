"""One line for a person when the broker or the configuration is not right (pure): what
failed, where (the URL with its password masked) and what to check.

Broker errors come from py-amqp and kombu (the services, `topology declare`, `status`,
`dlq`) or from pika (`publish`), wrapped differently by each: the reason is read from
the whole chain of an exception (causes, contexts, pika's lists of attempts).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

from pydantic import ValidationError

from services.operator.config import amqp_vhost, safe_amqp_url

# What to say for a variable that is not set, beside "X is not set".
UNSET_HINTS = {
    "ONCALL_FILE": "point it at the on-call file (examples/oncall.yaml is one)",
    "ACCOUNTS_FILE": "point it at the accounts file, or ACCOUNTS_FILE=none",
}
_UNREACHABLE = re.compile(
    r"refused|timed out|timeout|no route|unreachable|name or service not known|"
    r"nodename nor servname|temporary failure in name resolution|network is down|"
    r"connection reset|eof",
    re.I,
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested: list[object] = [*current.args, current.__cause__, current.__context__]
        nested += list(getattr(current, "exceptions", None) or [])  # pika's attempts
        nested.append(getattr(current, "exception", None))  # pika's connector errors
        todo += [e for e in nested if isinstance(e, BaseException)]


def _password(url: str) -> str | None:
    password = urlsplit(url).password
    return unquote(password) if password else None


def scrub(text: str, url: str) -> str:
    """`text` on one line, with the URL's password (plain or percent-encoded) masked."""
    password = _password(url)
    raw = urlsplit(url).password
    for secret in {password, raw} - {None, ""}:
        text = text.replace(str(secret), "***")
    return " ".join(text.split())


def _describe(exc: BaseException) -> str:
    text = str(exc) or repr(exc)  # some of pika's errors say it only in their repr
    return text if type(exc).__name__ in text else f"{type(exc).__name__}: {text}"


# What to say, by what went wrong; {detail} is the broker's or the socket's own words.
BROKER_REASONS = {
    "login": "the broker at {where} refused the login of user {user!r} (ACCESS_REFUSED): "
    "check the user name and password in AMQP_URL",
    "no_vhost": "vhost {vhost!r} does not exist on the broker at {where}: check the path "
    "of AMQP_URL ('//' is the default vhost '/')",
    "vhost_denied": "user {user!r} may not use vhost {vhost!r} on the broker at {where}: "
    "check the user's permissions, or the vhost in AMQP_URL",
    "not_found": "{detail} on the broker at {where}: declare the topology first "
    "(`premium-support topology declare`), with the same AMQP_PREFIX",
    "refused": "the broker at {where} refused user {user!r}: {detail}: check the user's "
    "permissions",
    "unreachable": "cannot reach the broker at {where}: {detail}: check that RabbitMQ runs "
    "there and that AMQP_URL's host and port are right",
    "other": "the broker at {where} failed: {detail}",
}


def _kind(chain: list[BaseException]) -> tuple[str, BaseException]:
    """What went wrong, and the exception of the chain that says it best."""
    text = " | ".join(_describe(e) for e in chain)
    if "ACCESS_REFUSED" in text and ("login" in text.lower() or "AuthenticationError" in text):
        return "login", chain[0]
    if "NOT_ALLOWED" in text and "vhost" in text:
        return ("no_vhost" if "not found" in text else "vhost_denied"), chain[0]
    for kind, code in (("not_found", "NOT_FOUND"), ("refused", "ACCESS_REFUSED")):
        if code in text:
            return kind, next(e for e in chain if code in _describe(e))
    if any(isinstance(e, OSError) for e in chain) or _UNREACHABLE.search(text):
        return "unreachable", chain[-1]  # the innermost: the socket's own error
    return "other", chain[0]


def broker_reason(exc: BaseException, url: str) -> str:
    """Why the broker at `url` could not be used, and what to check, on one line."""
    kind, telling = _kind(list(_chain(exc)))
    return BROKER_REASONS[kind].format(
        where=safe_amqp_url(url),
        user=unquote(urlsplit(url).username or "guest"),
        vhost=amqp_vhost(url),
        detail=scrub(_describe(telling), url),
    )


def settings_reason(exc: ValidationError) -> str:
    """Every problem of a settings class in one line, by environment variable; values
    are never repeated (one may be a password)."""
    problems = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "settings"
        if error["type"] == "missing":
            hint = UNSET_HINTS.get(name)
            problems.append(f"{name} is not set" + (f": {hint}" if hint else ""))
        else:
            problems.append(f"{name}: {error['msg']}")
    return "configuration: " + "; ".join(problems)

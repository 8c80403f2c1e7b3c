"""Secrets from the environment or from files, and keeping them out of every text.

A secret `X` comes from the variable `X` or from the file `X_FILE` names, as container
secrets are mounted (`/run/secrets/...`): both set is a mistake (which one would win is
a guess), a file's one trailing newline is dropped (editors and `echo` add it), an
unreadable file is one line naming the variable and the path. An empty `X` counts as
unset, as compose writes `X=` for a variable it was told to leave empty.

`redact` replaces known secrets in a text (an error, a log line) with `***`;
`url_secrets` lists the parts of a URL that are credentials: a Slack-style webhook
carries its token in the path, others in the query or the userinfo. Only the scheme,
host and port of such a URL are ever shown.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from services.runtime.yaml_files import ConfigFileError

__all__ = ["SecretError", "mask_url", "read_secret", "redact", "url_secrets"]

MASK = "***"
SHORTEST = 4  # a shorter "secret" would mask ordinary words, and guards nothing anyway


class SecretError(ConfigFileError):
    """A secret that cannot be read; one line naming the variable, never the value."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(variable, [(None, problem)])


def read_secret(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of `name`, or the content of the file `name_FILE`; None when neither."""
    env = os.environ if environ is None else environ
    value = env.get(name) or None
    path = env.get(f"{name}_FILE") or None
    if path is None:
        return value
    if value is not None:
        raise SecretError(f"{name}_FILE", f"{name} is set as well; set one of them, not both")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"{name}_FILE", f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise SecretError(f"{name}_FILE", f"cannot read {path}: {exc.strerror}") from None
    return text.removesuffix("\n").removesuffix("\r")


def url_secrets(url: str) -> list[str]:
    """What of `url` must never be shown: userinfo, path, query, fragment (each also as
    it is percent-decoded and encoded), and the URL itself."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found = [url, parts.password or "", parts.username or ""]
    path = parts.path if parts.path not in ("", "/") else ""
    found += [path, parts.query, parts.fragment]
    found += [f"{path}?{parts.query}"] if parts.query else []
    # A token alone (a server may echo the one it refuses): segments and query values
    # that look generated, not words such as `services` or `enqueue`.
    pieces = [*path.split("/"), *(pair.partition("=")[2] for pair in parts.query.split("&"))]
    found += [p for p in pieces if len(p) >= 16 or any(c.isdigit() for c in p)]
    return [v for s in found for v in {s, unquote(s), quote(s, safe="/")}]


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (long enough to be one) replaced by `***`, longest first,
    so a URL goes as a whole before its parts."""
    for secret in sorted({s for s in secrets if len(s) >= SHORTEST}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def mask_url(url: str) -> str:
    """scheme://user:***@host:port/path with the password (if any) masked."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rpartition("@")[2]
        user = parts.username or ""
    except ValueError:
        return MASK
    return parts._replace(netloc=f"{user}:{MASK}@{netloc}").geturl()

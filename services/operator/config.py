"""What the operator tools read from the environment, and where the management API is."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from pydantic import Field

from services.runtime.config import RuntimeSettings


class OperatorError(Exception):
    """Something an operator must be told about in one line; the CLI exits non-zero."""


class BrokerUnreachable(OperatorError):
    pass


class OperatorSettings(RuntimeSettings):
    # Default: the AMQP_URL host on port 15672 (15671 for amqps), same credentials.
    management_url: str | None = Field(None, alias="MANAGEMENT_URL")
    management_timeout_s: float = Field(3.0, alias="MANAGEMENT_TIMEOUT_S", gt=0)
    sla_store_url: str | None = Field(None, alias="SLA_STORE_URL")


@dataclass(frozen=True)
class ManagementEndpoint:
    base_url: str  # no credentials, no trailing slash
    username: str
    password: str
    vhost: str


def amqp_vhost(amqp_url: str) -> str:
    """kombu writes the default vhost as '//' (path '/'); '/%2F' and '' mean it too."""
    path = urlsplit(amqp_url).path
    vhost = unquote(path[1:]) if path.startswith("/") else unquote(path)
    return vhost or "/"


def management_endpoint(amqp_url: str, override: str | None) -> ManagementEndpoint:
    amqp = urlsplit(amqp_url)
    username = unquote(amqp.username or "guest")
    password = unquote(amqp.password or "guest")
    if override:
        given = urlsplit(override)
        host = given.hostname or "localhost"
        port = f":{given.port}" if given.port else ""
        base = f"{given.scheme or 'http'}://{host}{port}{given.path.rstrip('/')}"
        if given.username:  # credentials in MANAGEMENT_URL win over AMQP_URL's
            username, password = unquote(given.username), unquote(given.password or "")
        return ManagementEndpoint(base, username, password, amqp_vhost(amqp_url))
    tls = amqp.scheme in ("amqps", "pyamqps")
    scheme, default_port = ("https", 15671) if tls else ("http", 15672)
    base = f"{scheme}://{amqp.hostname or 'localhost'}:{default_port}"
    return ManagementEndpoint(base, username, password, amqp_vhost(amqp_url))


def safe_amqp_url(amqp_url: str) -> str:
    """The URL without its password, for messages and JSON output."""
    parts = urlsplit(amqp_url)
    if parts.password is None:
        return amqp_url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}@{netloc}").geturl()

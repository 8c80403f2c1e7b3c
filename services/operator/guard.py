"""The CLI's edge: settings that load and a broker that answers, or one line on stderr
and a non-zero exit, never a traceback (exit 2: the configuration; 1: the broker)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn, TypeVar

import typer
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from services.operator.config import OperatorError
from services.operator.literal import printable
from services.operator.reasons import broker_reason, settings_reason
from services.runtime.config import RuntimeSettings
from services.runtime.yaml_files import ConfigFileError

S = TypeVar("S", bound=BaseSettings)


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {printable(' '.join(message.split()))}", err=True)
    raise typer.Exit(code)


def load_settings(kind: type[S]) -> S:
    """`kind()` from the environment; a missing or malformed variable is one line."""
    try:
        return kind()
    except ValidationError as exc:
        fail(settings_reason(exc), 2)
    except ConfigFileError as exc:  # e.g. a secret's *_FILE that cannot be read
        fail(str(exc), 2)


@contextmanager
def startup_errors() -> Iterator[None]:
    """Inside: building a service from its settings and files. A variable that is not set
    or malformed, a file with a mistake (its line) or a store that cannot be opened is
    one line and exit 2."""
    import sqlalchemy as sa

    from services.common.store_engine import StoreUrlError

    try:
        yield
    except ValidationError as exc:
        fail(settings_reason(exc), 2)
    except (ConfigFileError, StoreUrlError) as exc:
        fail(str(exc), 2)
    except sa.exc.SQLAlchemyError as exc:  # the store's database does not answer
        fail(f"cannot open the store: {type(exc).__name__}: {str(exc).splitlines()[0]}", 2)


def _broker_errors() -> tuple[type[BaseException], ...]:
    import pika.exceptions

    from services.runtime.errors import ConnectionLost
    from services.runtime.publisher import CONNECTION_ERRORS

    return (*CONNECTION_ERRORS, ConnectionLost, pika.exceptions.AMQPError)


@contextmanager
def broker_errors(amqp_url: str, doing: str = "") -> Iterator[None]:
    """Inside: a broker failure becomes `error: <doing>: <why, where, what to check>`."""
    errors = _broker_errors()
    what = f"{doing}: " if doing else ""
    try:
        yield
    except OperatorError as exc:  # already says what and where
        fail(f"{what}{exc}")
    except errors as exc:
        fail(f"{what}{broker_reason(exc, amqp_url)}")


def check_broker(settings: RuntimeSettings, doing: str) -> None:
    """Connect once to AMQP_URL (user, password, vhost) and let go; fail in one line."""
    from services.operator.dlq_broker import connect

    if settings.is_memory:
        return
    with broker_errors(settings.amqp_url, doing):
        connect(settings).release()

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from services.runtime.logging import configure_logging
from tests.support.broker import broker_url

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    with broker_url() as url:
        yield url


@pytest.fixture(autouse=True)
def _logging_on_an_open_stream() -> None:
    """A test that logged into pytest's captured stderr (capsys) leaves structlog writing
    to a file that is closed once the test ends: the next test to log would fail with
    'I/O operation on closed file', whatever it tests. Point logging at a live stream."""
    factory = structlog.get_config().get("logger_factory")
    stream = getattr(factory, "_file", None)
    if stream is not None and stream.closed:
        configure_logging("console", "warning")
